#!/bin/sh
# Makes a self-signed certificate for the TLS listener on first start (unless one is mounted), then runs approvald.
set -eu
tls=/var/lib/approvald/tls
if [ "${1:-}" = serve ] && [ ! -f "$tls/cert.pem" ]; then
    approvald dev-cert --certificate "$tls/cert.pem" --private-key "$tls/key.pem" --dns-name approvald
fi
exec approvald "$@"
