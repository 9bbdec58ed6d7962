# The operator's image: the manager, and the cleanup/check subcommands the
# cleanup CronJobs run. Static binary on distroless, as the nonroot user
# (65532), so it passes the restricted Pod Security profile.
# `make image` builds the same image without a Docker engine (hack/image):
# the same binary and flags, user, CA bundle and labels; the zone database
# is compiled into the binary (tzdata.go), so both images carry it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
    -ldflags="-s -w -X github.com/sessionstore/sessionstore-operator/internal/version.Version=$VERSION" \
    -o /out/sessionstore-operator .

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title=sessionstore-operator \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.source=https://github.com/sessionstore/sessionstore-operator
COPY --from=build /out/sessionstore-operator /sessionstore-operator
USER 65532:65532
ENTRYPOINT ["/sessionstore-operator"]
