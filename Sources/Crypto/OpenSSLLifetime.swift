// OpenSSL's process-wide state, kept to the end of the process. By default OpenSSL frees it in an atexit handler,
// which also unhooks the per-thread cleanup: a thread that ends after that handler (a Swift concurrency pool thread
// going idle as the process exits) then leaks its per-thread random generators, and LeakSanitizer says so.
import COpenSSL

public enum OpenSSLLifetime {
    /// Call first in a process, before anything else uses OpenSSL: later calls cannot change it.
    public static func keepStateUntilExit() {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }
}
