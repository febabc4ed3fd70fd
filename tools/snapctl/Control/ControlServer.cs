using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Snapshot.Nbd;

namespace SnapCtl.Control;

/// <summary>
/// The serving process's end of the control socket (<see cref="ControlProtocol"/>): accepts connections from the
/// store's owner only (socket mode 0600, and the peer's user id checked), reads one request, runs it
/// (<see cref="LiveCommands"/>) and answers. Snapshot changes run one at a time; <c>status</c> and <c>diff</c> run at once.
/// </summary>
/// <remarks>Locking: <c>_changes</c> serialises create, delete and merge (held across the store call, never while
/// waiting on a client's socket); nothing else is shared between control connections.</remarks>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
internal sealed class ControlServer : IAsyncDisposable
{
    private readonly NbdServer _server;
    private readonly ILogger _log;
    private readonly Socket _listener;
    private readonly string _path;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _changes = new(1, 1);
    private readonly List<Task> _running = new();
    private readonly Task _acceptLoop;

    private ControlServer(NbdServer server, ILogger log, Socket listener, string path)
    {
        _server = server;
        _log = log;
        _listener = listener;
        _path = path;
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>The socket path.</summary>
    public string Path => _path;

    /// <summary>Creates <c>&lt;store&gt;/control.sock</c> (mode 0600) and starts answering.</summary>
    public static ControlServer Start(NbdServer server, string store, ILogger log)
    {
        string path = System.IO.Path.GetFullPath(ControlProtocol.SocketPath(store));
        var listener = UnixSocketFile.Listen(path, ControlProtocol.SocketMode, backlog: 16);
        return new ControlServer(server, log, listener, path);
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            Socket client;
            try
            {
                // Why we wait: for the next command.
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            lock (_running)
            {
                _running.RemoveAll(t => t.IsCompleted);
                _running.Add(HandleAsync(client));
            }
        }
    }

    private async Task HandleAsync(Socket client)
    {
        using (client)
        {
            try
            {
                uint peer = ControlProtocol.PeerUid(client);
                if (peer != ControlProtocol.MyUid)
                {
                    _log.LogWarning("control socket: refused a connection from user {Peer} (only user {Owner} may manage the store)", peer, ControlProtocol.MyUid);
                    return;
                }
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(TimeSpan.FromSeconds(30));
                string? line = await ControlProtocol.ReadLineAsync(client, timeout.Token).ConfigureAwait(false);
                if (line is null) return;
                ControlRequest? request;
                try { request = JsonSerializer.Deserialize<ControlRequest>(line, ControlProtocol.Json); }
                catch (JsonException e)
                {
                    _log.LogWarning("control socket: unreadable request: {Message}", e.Message);
                    return;
                }
                if (request is null) return;
                bool change = request.Command is not ("status" or "diff"); // those two only read: they run at once
                _log.LogInformation("control: {Command}{Name}{Force}", request.Command, request.Name is null ? "" : " " + request.Name, request.Force ? " --force" : "");
                // Why we wait: another snapshot change runs; they run one at a time.
                if (change) await _changes.WaitAsync().ConfigureAwait(false);
                ControlResponse response;
                try
                {
                    response = await LiveCommands.RunAsync(_server, request).ConfigureAwait(false);
                }
                finally
                {
                    if (change) _changes.Release();
                }
                if (response.Exit != 0) _log.LogWarning("control: {Command} failed (exit {Exit}): {Error}", request.Command, response.Exit, response.Stderr.Trim());
                await ControlProtocol.WriteLineAsync(client, response, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
            {
                _log.LogWarning("control socket: connection ended: {Message}", e.Message);
            }
        }
    }

    /// <summary>Stops accepting commands, waits for the running ones, removes the socket file.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        Task[] running;
        lock (_running) running = _running.ToArray();
        // Why we wait: a command already running (a merge) finishes before the store is closed.
        await Task.WhenAll(running).ConfigureAwait(false);
        UnixSocketFile.Remove(_path);
        _stop.Dispose();
    }
}
