# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
RUN --mount=type=secret,id=netrc,target=/root/.netrc \
    --mount=type=ssh \
    --mount=target=. \
    --mount=type=cache,target=/go/pkg/mod,sharing=locked \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/svc ./cmd/svc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --link --from=build /out/svc /svc
USER 65532:65532
ENTRYPOINT ["/svc"]
