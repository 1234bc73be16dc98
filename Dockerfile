# Builds the keyrelay server into a small image. Used by docker-compose.yml.
# The image is distroless: no shell, curl or wget. keyrelay-probe (a few
# MiB, standard library only) is there for health checks instead:
#   /keyrelay-probe http://127.0.0.1:8080/readyz   exits 0 once ready.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# .dockerignore keeps .git, build outputs and test artifacts out of this.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/keyrelay ./cmd/keyrelay-probe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keyrelay /out/keyrelay-probe /
EXPOSE 8080
ENTRYPOINT ["/keyrelay"]
