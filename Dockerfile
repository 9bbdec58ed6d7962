# The operator's image: the manager, and the cleanup/check subcommands the
# cleanup CronJobs run. Static binary on distroless, as the nonroot user
# (65532), so it passes the restricted Pod Security profile.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
    -ldflags="-s -w -X github.com/sessionstore/sessionstore-operator/internal/version.Version=$VERSION" \
    -o /out/sessionstore-operator .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessionstore-operator /sessionstore-operator
USER 65532:65532
ENTRYPOINT ["/sessionstore-operator"]
