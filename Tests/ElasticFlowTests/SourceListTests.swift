import Foundation
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// Directories and file lists as sources (`SourceList`): the walk's order, symlinks, loops,
/// unreadable entries, and the names of a `--files-from` list.
@Suite struct SourceListTests {
    /// A tree with nested folders, empty files, a hidden folder, links to files and to folders,
    /// and a link back up the tree (`loop -> .`, `up -> ..`).
    static func tree(in directory: TemporaryDirectory) throws -> String {
        let root = directory.path("tree")
        for folder in ["a/b/c", "a-b", ".hidden", "empty-folder"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        let files: [(String, String)] = [
            ("top.txt", "alpha beta\n"), ("a/one", "gamma"), ("a/b/two.txt", "delta\ngamma\n"),
            ("a/b/c/three", "epsilon  "), ("a/b/empty", ""), ("a-b/dash", "zeta\tzeta"),
            (".hidden/secret", "eta\n"), ("a/b/c/empty too", ""), ("Zed", "theta"),
        ]
        for (name, text) in files { _ = try directory.file("tree/" + name, Array(text.utf8)) }
        symlink(".", root + "/a/loop")
        symlink("..", root + "/a/b/up")
        symlink("../top.txt", root + "/a/link-to-top")
        symlink("b", root + "/a/link-to-b")
        return root
    }

    @Test func aDirectoryIsEveryRegularFileBelowItInByteOrder() throws {
        let directory = try TemporaryDirectory()
        let root = try Self.tree(in: directory)
        let list = try SourceList(expanding: [root])
        let expected = [
            ".hidden/secret", "Zed", "a-b/dash", "a/b/c/empty too", "a/b/c/three", "a/b/empty", "a/b/two.txt",
            "a/link-to-top", "a/one", "top.txt",
        ].map { DataSource.file(root + "/" + $0) }
        #expect(list.sources == expected)  // no path through loop, up or link-to-b: no file twice
        #expect(list.skipped.isEmpty)
        // A trailing slash changes nothing but the spelling; arguments keep their order.
        let slashed = try SourceList(expanding: ["-", root + "/a/b/", root + "/Zed"])
        #expect(
            slashed.sources == [
                .standardInput, .file(root + "/a/b/c/empty too"), .file(root + "/a/b/c/three"),
                .file(root + "/a/b/empty"), .file(root + "/a/b/two.txt"), .file(root + "/Zed"),
            ])
    }

    @Test func aSymlinkLoopIsAnUnreadableEntryNeverAHang() throws {
        let directory = try TemporaryDirectory()
        let root = try Self.tree(in: directory)
        symlink("self", root + "/a/self")
        symlink("ping", root + "/pong")
        symlink("pong", root + "/ping")
        symlink("nowhere", root + "/dangling")
        #expect(throws: ElasticFlowError.io(path: root + "/a/self", operation: "follow the symlink", errno: ELOOP)) {
            _ = try SourceList(expanding: [root + "/a"])
        }
        let list = try SourceList(expanding: [root], unreadable: .skip)
        #expect(list.sources.count == 10)
        // Reported in the order of the files (byte-wise order of the paths, as `find | LC_ALL=C sort`).
        #expect(list.skipped.map(\.path) == [root + "/a/self", root + "/dangling", root + "/ping", root + "/pong"])
        #expect(list.skipped[1].reason.contains("No such file or directory"), "\(list.skipped)")
        #expect(list.skipped[0].reason.contains("Too many levels of symbolic links"), "\(list.skipped)")
        // Named as arguments, a missing path and a loop are skipped the same way.
        let named = try SourceList(expanding: [root + "/ping", root + "/Zed", root + "/missing"], unreadable: .skip)
        #expect(named.sources == [.file(root + "/Zed")])
        #expect(named.skipped.map(\.path) == [root + "/ping", root + "/missing"])
    }

    // Root reads any file and folder whatever its mode; the symlink cases above run for root too.
    @Test(.enabled(if: getuid() != 0, "root can read a file or folder with mode 000"))
    func filesAndFoldersWithoutReadPermissionAreReportedByPath() throws {
        let directory = try TemporaryDirectory()
        let root = try Self.tree(in: directory)
        chmod(root + "/a/one", 0)
        // Under .fail a file is opened (and refused) by the job's own check of its sources.
        #expect(try SourceList(expanding: [root + "/a"]).sources.contains(.file(root + "/a/one")))
        #expect(throws: ElasticFlowError.io(path: root + "/a/one", operation: "open", errno: EACCES)) {
            _ = try LocalWordCount.run(try SourceList(expanding: [root + "/a"]).sources)
        }
        chmod(root + "/a/b/c", 0)
        defer { chmod(root + "/a/b/c", 0o755) }  // so the directory can be removed
        #expect(throws: ElasticFlowError.io(path: root + "/a/b/c", operation: "read directory", errno: EACCES)) {
            _ = try SourceList(expanding: [root + "/a/b"])
        }
        let list = try SourceList(expanding: [root], unreadable: .skip)
        #expect(Set(list.skipped.map(\.path)) == [root + "/a/one", root + "/a/b/c"])
        #expect(!list.sources.contains(.file(root + "/a/one")))
    }

    @Test func aListIsSplitAtNewlinesOrAtNULsWhenItHoldsOne() {
        let lines = Array("a b\n\nc\r\n./d\n".utf8)
        #expect(SourceList.names(in: lines) == ["a b", "c\r", "./d"])
        let nuls = Array("with space\0with\nnewline\0\0last".utf8)
        #expect(SourceList.names(in: nuls) == ["with space", "with\nnewline", "last"])
        #expect(SourceList.names(in: Array("one\ntwo".utf8), separator: .nul) == ["one\ntwo"])
        #expect(SourceList.names(in: []).isEmpty)
    }

    @Test func aMissingListIsOneClearError() {
        #expect(throws: ElasticFlowError.io(path: "/nonexistent/list", operation: "open the file list", errno: ENOENT))
        {
            _ = try SourceList.names(inListAt: "/nonexistent/list")
        }
    }
}
