# Builds the keyrelay server into a small image. Used by docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /keyrelay ./cmd/keyrelay

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /keyrelay /keyrelay
EXPOSE 8080
ENTRYPOINT ["/keyrelay"]
