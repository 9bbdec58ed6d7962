//go:build tools

// Package tools pins the FerretDB command so `go build` can find it.
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
