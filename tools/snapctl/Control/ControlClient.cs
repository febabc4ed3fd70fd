using System.Net.Sockets;
using System.Text.Json;
using Journal.Tools;

namespace SnapCtl.Control;

/// <summary>
/// The client side of the control socket: used by <c>snapshot create|delete|merge</c>, <c>status</c> and <c>diff</c> before they
/// open the store. When a server holds the store they forward the command to it and print its answer; otherwise (no
/// socket, or a socket left by a server that was killed) they go on offline.
/// </summary>
internal static class ControlClient
{
    /// <summary>How long to wait for the serving process to answer (a merge of a large snapshot takes a while).</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromHours(24);

    /// <summary>
    /// Sends <paramref name="request"/> to the server holding <paramref name="store"/> and prints its answer; returns its
    /// exit code, or null when no server holds the store (the command then runs offline).
    /// </summary>
    public static async Task<int?> TryForwardAsync(ToolConsole console, string store, ControlRequest request)
    {
        if (OperatingSystem.IsWindows()) return null;
        string path = ControlProtocol.SocketPath(store);
        // Anything but a socket at the name (a file, FIFO or link put there, or left) has no server behind it: the command
        // runs offline, and the store's lock keeps it from a serving process all the same.
        if (!File.Exists(path) || Snapshot.Nbd.UnixSocketFile.NotASocket(path) is not null) return null;
        var mode = File.GetUnixFileMode(path);
        if ((mode & ~(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute)) != 0)
            throw new ToolException(ExitCodes.Failure,
                $"{path}: control socket has mode {Snapshot.Nbd.UnixSocketFile.Octal(mode)}, open to other users; refusing to use it (snapctl serve makes it 0600)");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path)).ConfigureAwait(false);
        }
        catch (SocketException)
        {
            return null; // a socket file with no server behind it: the server was killed; the store is not held
        }
        uint peer = ControlProtocol.PeerUid(socket);
        if (peer != ControlProtocol.MyUid)
            throw new ToolException(ExitCodes.Failure, $"{path}: the control socket belongs to user {peer}, not to you (user {ControlProtocol.MyUid}); refusing to use it");
        using var timeout = new CancellationTokenSource(AnswerTimeout);
        string? line;
        try
        {
            await ControlProtocol.WriteLineAsync(socket, request, timeout.Token).ConfigureAwait(false);
            line = await ControlProtocol.ReadLineAsync(socket, timeout.Token, ControlProtocol.MaxResponseBytes).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            throw new ToolException(ExitCodes.Failure, $"{path}: the serving process did not answer: {ErrorMap.OneLine(e.Message)}");
        }
        if (line is null) throw new ToolException(ExitCodes.Failure, $"{path}: the serving process closed the control connection without an answer");
        ControlResponse? response;
        try
        {
            response = JsonSerializer.Deserialize<ControlResponse>(line, ControlProtocol.Json);
        }
        catch (JsonException e)
        {
            throw new ToolException(ExitCodes.Failure, $"{path}: unreadable answer from the serving process: {ErrorMap.OneLine(e.Message)}");
        }
        if (response is null) throw new ToolException(ExitCodes.Failure, $"{path}: empty answer from the serving process");
        console.Out.Write(response.Stdout);
        console.Out.Flush();
        console.Error.Write(response.Stderr);
        console.Error.Flush();
        return response.Exit;
    }
}
