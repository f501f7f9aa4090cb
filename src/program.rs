//! How the person typed this program, so that every hint names commands the way they
//! run them. Imports nothing of the crate.

/// How the person typed this program: `kubectl jitgate` when it runs as the kubectl
/// plugin (installed as `kubectl-jitgate`), else `jitgate`. Hints name commands this way.
pub fn name() -> &'static str {
    static PROGRAM: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
        let invoked_as = std::env::args_os().next().and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        if invoked_as.as_deref() == Some("kubectl-jitgate") {
            "kubectl jitgate"
        } else {
            "jitgate"
        }
    });
    *PROGRAM
}
