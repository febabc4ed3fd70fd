using System.Net.Sockets;
using Journal;

namespace Snapshot.Nbd;

/// <summary>
/// Unix socket files with a given mode from the moment they appear: the socket is bound inside a fresh directory only
/// the owner can enter (mode 0700), given its mode there, and then renamed into place, so no other user can ever reach
/// it through a wider mode left by the umask. Used for the NBD sockets and for <c>snapctl</c>'s control socket.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
internal static class UnixSocketFile
{
    /// <summary>
    /// Binds and listens on <paramref name="path"/> with <paramref name="mode"/>. An existing socket file with no server
    /// behind it (left by a killed server) is replaced; a live socket, a regular file or a directory is refused with a
    /// <see cref="JournalException"/> naming the path.
    /// </summary>
    public static Socket Listen(string path, UnixFileMode mode, int backlog = 512)
    {
        RemoveStale(path);
        string parent = Path.GetDirectoryName(path) ?? ".";
        if (!Directory.Exists(parent)) throw new JournalException($"{path}: folder {parent} does not exist");
        string privateDir = Path.Combine(parent, $".sock-{Guid.NewGuid():N}"[..14]);
        string staged = Path.Combine(privateDir, "s");
        bool direct = System.Text.Encoding.UTF8.GetByteCount(staged) > 107;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (direct)
            {
                // The staging path would be too long for a socket address: bind in place and set the mode at once.
                socket.Bind(new UnixDomainSocketEndPoint(path));
                File.SetUnixFileMode(path, mode);
            }
            else
            {
                Directory.CreateDirectory(privateDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                try
                {
                    socket.Bind(new UnixDomainSocketEndPoint(staged));
                    File.SetUnixFileMode(staged, mode);
                    File.Move(staged, path);
                }
                finally
                {
                    try { Directory.Delete(privateDir, recursive: true); } catch (IOException) { }
                }
            }
            var actual = File.GetUnixFileMode(path);
            if (actual != mode) throw new JournalException($"{path}: socket mode is {Octal(actual)}, expected {Octal(mode)}");
            socket.Listen(backlog);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new JournalException($"{path}: cannot listen: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            throw new JournalException($"{path}: cannot create the socket: {e.Message}");
        }
    }

    /// <summary>The mode as octal digits ("0600").</summary>
    public static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode, 8);

    /// <summary>True when something accepts connections on the socket at <paramref name="path"/>.</summary>
    public static bool IsLive(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Null when <paramref name="path"/> is a socket itself (not a symbolic link to one); otherwise what it is ("a
    /// symbolic link", "a regular file", "a FIFO", ...). Found out without opening it: opening a FIFO blocks until a
    /// writer comes.
    /// </summary>
    public static string? NotASocket(string path)
    {
        if (new FileInfo(path).LinkTarget is not null) return "a symbolic link";
        return Recovery.RegularFile.WhatElse(path) switch
        {
            "a socket" => null,
            null => "a regular file",
            var other => other,
        };
    }

    private static void RemoveStale(string path)
    {
        if (Directory.Exists(path)) throw new JournalException($"{path}: is a directory, not a socket");
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null) return;
        if (NotASocket(path) is { } what) throw new JournalException($"{path}: exists and is {what}, not a socket; not replacing it");
        if (IsLive(path)) throw new JournalException($"{path}: a server is already listening on this socket");
        File.Delete(path);
    }

    /// <summary>Removes the socket file at <paramref name="path"/> if it is still a socket (a server's own, at stop).</summary>
    public static void Remove(string path)
    {
        try
        {
            if (File.Exists(path) && NotASocket(path) is null) File.Delete(path);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
