# Sourced by the benchmarks whose verifier is bench/h2-ceiling's reference server, which speaks h2c only. From
# 0.18.0 on, an http:// verifier_url gets HTTP/1.1 unless its IdP client says verifier_protocol = "h2c"; builds
# before it know no such key and refuse one they do not know.

# h2c_verifier BINARY: prints the [[idp_clients]] line that keeps BINARY's callbacks on h2c (nothing before 0.18.0).
h2c_verifier() {
    local version
    version=$("$1" --version | awk '{ print $2 }')
    [ "$(printf '%s\n0.18.0\n' "$version" | sort -V | head -1)" = 0.18.0 ] && echo 'verifier_protocol = "h2c"'
    return 0
}
