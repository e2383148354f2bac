import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A `Pipe` whose descriptors are close-on-exec in this process. Foundation's `Pipe()` makes
/// inheritable descriptors, so a process another test spawns at the same moment inherits this
/// pipe's write end and holds it open: a reader waiting for end-of-file then waits until that
/// unrelated process exits (seen as a suite that hung with two tests each waiting on the other's
/// child). The child `Process` still gets its own end: spawning duplicates it onto 0, 1 or 2,
/// which clears the flag there.
func privatePipe() -> Pipe {
    let pipe = Pipe()
    for handle in [pipe.fileHandleForReading, pipe.fileHandleForWriting] {
        let fd = handle.fileDescriptor
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
    }
    return pipe
}
