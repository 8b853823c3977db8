# syntax=docker/dockerfile:1.4
FROM alpine:3.20
RUN <<EOT sh
set -e
apk add --no-cache curl ca-certificates
update-ca-certificates
EOT
RUN <<EOT
#!/usr/bin/env sh
echo "hello from a script"
EOT
COPY --chmod=0755 <<-"EOT" /usr/local/bin/healthy
	#!/bin/sh
	exec curl -fsS http://localhost:8080/health
	EOT
HEALTHCHECK CMD ["/usr/local/bin/healthy"]
