// What this binary was built from, for `approvald --version` and `approvald_build_info` on /metrics.
import CBuildInfo

public enum BuildInfo {
    public static let version = String(cString: approvald_build_version())
    public static let commit = String(cString: approvald_build_commit())
    /// `approvald <version> (<commit>)`.
    public static let line = "approvald \(version) (\(commit))"
}
