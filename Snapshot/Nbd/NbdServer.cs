using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Journal;
using Microsoft.Extensions.Logging;
using Snapshot.Sync;

namespace Snapshot.Nbd;

/// <summary>
/// Serves the volumes of an open <see cref="SnapshotStore"/> over NBD (NetworkBlockDevice/nbd <c>doc/proto.md</c>, fixed
/// newstyle, structured replies) on Unix sockets and TCP: the export <c>origin</c> (also the default, empty name) and
/// one export per snapshot, by its name. See <c>docs/nbd.md</c> for the exports, flags and semantics.
/// </summary>
/// <remarks>
/// <para>The server does not own the store: stopping it (<see cref="StopAsync"/>, <see cref="DisposeAsync"/>) stops
/// accepting, finishes the requests in flight, flushes the store, and leaves it open for the caller to close.</para>
/// <para>Snapshot changes while serving go through the server (<see cref="CreateSnapshotAsync"/>,
/// <see cref="DeleteSnapshotAsync"/>, <see cref="MergeSnapshotAsync"/>): create makes every origin write land wholly on
/// one side of the snapshot; delete and merge refuse a snapshot that connections have open unless forced, which
/// disconnects them first.</para>
/// <para>Durability: a WRITE reply means readers see the data and every snapshot that shared its chunks holds their old
/// data durably (the store's copy-on-write guarantee); a FLUSH reply means every write replied to before the FLUSH
/// arrived, on any connection, is durable (<see cref="SnapshotStore.FlushAsync"/> covers every write that returned
/// before it is called, and a reply is sent only after its write returned), hence NBD_FLAG_CAN_MULTI_CONN; FUA is the
/// store's per-write forced unit access (<see cref="WriteFlags.Fua"/>: the device the write went to is flushed, shared
/// with concurrent writers).</para>
/// <para>Locking: <c>_lock</c> protects the connection set, the list of connections still negotiating (and each one's
/// place in it, <see cref="NbdConnection.Negotiating"/>), the listeners and the stopping flag; never held across an
/// await, and no socket is closed or log line written while holding it. The write gate (<see cref="WriteGate"/>) is
/// shared by origin writes and exclusive for snapshot creation; see <see cref="NbdWorker"/> for the order in which a
/// request takes what it holds.</para>
/// </remarks>
public sealed class NbdServer : IAsyncDisposable
{
    private readonly SnapshotStore _store;
    private readonly object _lock = new();
    private readonly HashSet<NbdConnection> _connections = new();
    // Of _connections, those still negotiating, in the order they arrived (the first has negotiated longest).
    private readonly LinkedList<NbdConnection> _negotiating = new();
    private readonly List<Socket> _listeners = new();
    private readonly List<string> _unixPaths = new();
    private readonly List<Task> _acceptLoops = new();
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly List<string> _addresses = new();
    private long _nextId;
    private long _accepted;
    private long _refused;
    private long _stalledDisconnects;
    private bool _stopping;
    private Task? _stopped;

    private NbdServer(SnapshotStore store, NbdServerOptions options)
    {
        _store = store;
        Options = options;
        Logger = options.LoggerFactory.CreateLogger("nbd");
        Registry = new NbdExportRegistry(store, options.ReadOnly);
        // The pool keeps at most what the server may have in flight (and at most 512 MiB): arrays past it go back to the
        // garbage collector when their requests end.
        long retained = Math.Min(Math.Clamp(options.MaxBytesInFlight * 2, 64L << 20, 512L << 20), options.MaxServerBytesInFlight);
        Buffers = new NbdBufferPool(retained);
        Room = new NbdServerBudget(options.MaxServerBytesInFlight, options.StalledClientTimeout, this);
    }

    /// <summary>The options in force.</summary>
    public NbdServerOptions Options { get; }

    /// <summary>The store being served.</summary>
    public SnapshotStore Store => _store;

    /// <summary>Where the server listens, as NBD URIs (<c>nbd+unix:///?socket=/path</c>, <c>nbd://127.0.0.1:10809</c>), one per listener.</summary>
    public IReadOnlyList<string> Addresses { get { lock (_lock) return _addresses.ToArray(); } }

    /// <summary>The TCP endpoints actually bound (port 0 resolved), in the order of <see cref="NbdServerOptions.TcpEndpoints"/>.</summary>
    public IReadOnlyList<IPEndPoint> TcpEndpoints { get { lock (_lock) return _listeners.Where(l => l.LocalEndPoint is IPEndPoint).Select(l => (IPEndPoint)l.LocalEndPoint!).ToArray(); } }

    /// <summary>Connections open now (negotiating or transmitting).</summary>
    public int ConnectionCount { get { lock (_lock) return _connections.Count; } }

    /// <summary>Connections open now that have not chosen an export yet (at most <see cref="NbdServerOptions.NegotiatingBound"/>).</summary>
    internal int NegotiatingCount { get { lock (_lock) return _negotiating.Count; } }

    /// <summary>Connections accepted since start.</summary>
    public long ConnectionsAccepted => Interlocked.Read(ref _accepted);

    /// <summary>Connections closed at once because <see cref="NbdServerOptions.MaxConnections"/> were open.</summary>
    public long ConnectionsRefused => Interlocked.Read(ref _refused);

    /// <summary>Bytes of payload buffers the server has allocated since start (a steady state adds none).</summary>
    public long BufferBytesAllocated => Buffers.AllocatedBytes;

    /// <summary>Connections that have export <paramref name="name"/> open (<c>origin</c> or a snapshot name).</summary>
    public int ConnectionsTo(string name) => Registry.OpenCount(name);

    /// <summary>The most requests and payload bytes any open connection has had in flight at once, and how often a reader stopped at its bound.</summary>
    public (int PeakRequests, long PeakBytes, long BoundWaits) InFlightStatistics
    {
        get
        {
            lock (_lock)
            {
                int r = 0;
                long b = 0, w = 0;
                foreach (var c in _connections)
                {
                    r = Math.Max(r, c.Budget.PeakRequests);
                    b = Math.Max(b, c.Budget.PeakBytes);
                    w += c.Budget.Waits;
                }
                return (r, b, w);
            }
        }
    }

    internal ILogger Logger { get; }

    internal NbdExportRegistry Registry { get; }

    internal NbdBufferPool Buffers { get; }

    /// <summary>The payload bytes of all connections together (<see cref="NbdServerOptions.MaxServerBytesInFlight"/>).</summary>
    internal NbdServerBudget Room { get; }

    /// <summary>Connections disconnected because their clients held room others waited for (<see cref="DisconnectStalledClients"/>).</summary>
    internal long StalledDisconnects => Interlocked.Read(ref _stalledDisconnects);

    /// <summary>Requests served, by operation (read by the <c>Snapshot</c> meter).</summary>
    internal NbdCounters Counters { get; } = new();

    /// <summary>Origin writes hold it shared; snapshot creation holds it exclusively.</summary>
    internal AsyncGate WriteGate { get; } = new();

    /// <summary>
    /// Starts serving <paramref name="store"/>: binds every listener (a Unix socket file is created with mode 0600, owner
    /// only; a stale socket file left by a dead server is replaced, a live one is refused) and starts accepting.
    /// </summary>
    public static Task<NbdServer> StartAsync(SnapshotStore store, NbdServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        var server = new NbdServer(store, options);
        try
        {
            foreach (var path in options.UnixSockets)
            {
                if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("unix socket files need a Unix system");
                string full = Path.GetFullPath(path);
                var s = UnixSocketFile.Listen(full, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                lock (server._lock)
                {
                    server._listeners.Add(s);
                    server._unixPaths.Add(full);
                    server._addresses.Add($"nbd+unix:///?socket={full}");
                }
            }
            foreach (var ep in options.TcpEndpoints)
            {
                var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    s.Bind(ep);
                    s.Listen(512);
                }
                catch (SocketException e)
                {
                    s.Dispose();
                    throw new JournalException($"{ep}: cannot listen: {e.Message}");
                }
                var bound = (IPEndPoint)s.LocalEndPoint!;
                lock (server._lock)
                {
                    server._listeners.Add(s);
                    server._addresses.Add(bound.AddressFamily == AddressFamily.InterNetworkV6
                        ? string.Create(CultureInfo.InvariantCulture, $"nbd://[{bound.Address}]:{bound.Port}")
                        : string.Create(CultureInfo.InvariantCulture, $"nbd://{bound.Address}:{bound.Port}"));
                }
            }
        }
        catch
        {
            server.CloseListeners();
            throw;
        }
        lock (server._lock)
        {
            foreach (var a in server._addresses) NbdLog.Listening(server.Logger, a);
            foreach (var l in server._listeners) server._acceptLoops.Add(server.AcceptLoopAsync(l));
            Diagnostics.SnapshotMetrics.Add(server, server._addresses.Count > 0 ? server._addresses[0] : server._store.Folder);
        }
        return Task.FromResult(server);
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var ct = _stopAccepting.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                // Why we wait: for the next client.
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                if (ct.IsCancellationRequested) return;
                NbdLog.AcceptFailed(Logger, e.Message);
                // Why we wait: a failing accept (out of descriptors) is not retried in a tight loop.
                try { await Task.Delay(50, ct).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
                continue;
            }
            Accept(client);
        }
    }

    private void Accept(Socket client)
    {
        string peer;
        try
        {
            peer = client.RemoteEndPoint is IPEndPoint ip ? ip.ToString() : "unix socket";
            if (client.ProtocolType == ProtocolType.Tcp) client.NoDelay = true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            client.Dispose();
            return;
        }
        NbdConnection? connection = null;
        NbdConnection? makeRoom = null;
        int negotiating = Options.NegotiatingBound;
        lock (_lock)
        {
            if (!_stopping)
            {
                // Rule: at most NegotiatingBound connections negotiate. A newcomer over it is taken and the connection that
                // has negotiated longest leaves (so connections that send nothing cannot keep clients out by holding the
                // places, even by reconnecting at once), also when MaxConnections are open.
                if (_negotiating.Count >= negotiating) makeRoom = _negotiating.First!.Value;
                if (makeRoom is not null || _connections.Count < Options.MaxConnections)
                {
                    // The one leaving stays in _connections until its task ends (StopAsync waits for it); its socket is
                    // closed below, before this one starts.
                    if (makeRoom is not null) LeaveNegotiating(makeRoom);
                    connection = new NbdConnection(this, client, ++_nextId, peer);
                    _connections.Add(connection);
                    connection.Negotiating = _negotiating.AddLast(connection);
                }
            }
        }
        if (makeRoom is not null)
        {
            double seconds = Math.Round((Environment.TickCount64 - makeRoom.AcceptedAt) / 1000.0, 3);
            if (makeRoom.Disconnect(string.Create(CultureInfo.InvariantCulture, $"closed by the server after {seconds:0.###} s of negotiation to make room for a new connection ({negotiating} connections were negotiating)")))
                NbdLog.MadeRoom(Logger, makeRoom.Id, makeRoom.Peer, seconds, negotiating);
        }
        if (connection is null)
        {
            Interlocked.Increment(ref _refused);
            NbdLog.RefusedLimit(Logger, peer, Options.MaxConnections);
            client.Dispose();
            return;
        }
        Interlocked.Increment(ref _accepted);
        NbdLog.Opened(Logger, connection.Id, peer);
        connection.Start();
    }

    /// <summary>
    /// Called by a reader that waited <paramref name="timeout"/> for room under the server's byte bound: disconnects every
    /// connection that holds room and whose client has not finished taking a reply, or delivering a WRITE's payload, for
    /// that long (<see cref="NbdServerBudget"/>, "why waiting ends"). Does not wait: the connections end on their own and
    /// give their room back as their replies are dropped.
    /// </summary>
    internal void DisconnectStalledClients(TimeSpan timeout)
    {
        NbdConnection[] open;
        lock (_lock) open = _connections.ToArray();
        foreach (var c in open)
        {
            if (c.Budget.Bytes == 0 || c.StalledFor() < timeout) continue;
            if (!c.Disconnect($"disconnected by the server: its client took no reply and sent no data for {timeout.TotalSeconds:0.#} s while other connections waited for buffer room"))
                continue;
            NbdLog.StalledClient(Logger, c.Id, timeout.TotalSeconds, c.Budget.Bytes);
            Interlocked.Increment(ref _stalledDisconnects);
        }
    }

    /// <summary>
    /// The connection chose its export and is about to send the reply that starts transmission: it no longer counts
    /// toward <see cref="NbdServerOptions.NegotiatingBound"/>, so it can no longer be closed to make room. Called before
    /// that reply, not after it (a client that had its reply could otherwise be closed while the reply was being sent,
    /// and see its first I/O fail). False when it was already chosen to make room: the handshake fails instead.
    /// </summary>
    internal bool TryEndNegotiation(NbdConnection connection)
    {
        lock (_lock)
        {
            if (connection.Negotiating is null) return false;
            LeaveNegotiating(connection);
            return true;
        }
    }

    // Under _lock.
    private void LeaveNegotiating(NbdConnection connection)
    {
        if (connection.Negotiating is { } node)
        {
            _negotiating.Remove(node);
            connection.Negotiating = null;
        }
    }

    internal void OnConnectionEnded(NbdConnection connection)
    {
        bool last;
        lock (_lock)
        {
            LeaveNegotiating(connection);
            _connections.Remove(connection);
            last = _connections.Count == 0;
        }
        if (last) GiveMemoryBack();
    }

    /// <summary>Buffer bytes given up at once that are worth a collection to return them to the system.</summary>
    private const long GiveBackThreshold = 32L << 20;

    private long _lastGiveBack;

    /// <summary>
    /// The last client is gone. If the clients had more buffers in flight than the pool keeps (32 MiB or more of arrays
    /// were given up to the garbage collector since the last time), the pool's arrays are dropped too and a full
    /// compacting collection on a pool thread returns the memory to the system, at most once every 10 s. Without it the
    /// arrays, large objects, would stay in the process until the collector next runs, which an idle server does not
    /// make it do. A server whose load fits the pool keeps it (its next clients allocate nothing).
    /// </summary>
    private void GiveMemoryBack()
    {
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref _lastGiveBack);
        if (Buffers.DroppedBytes < GiveBackThreshold || (last != 0 && now - last < 10_000)) return;
        if (Interlocked.CompareExchange(ref _lastGiveBack, now, last) != last) return;
        Buffers.Trim();
        _ = Task.Run(() => GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true));
    }

    /// <summary>
    /// Makes every write that was replied to durable (NBD_CMD_FLUSH): a store flush, which covers every write that
    /// returned before it is called, on any connection.
    /// </summary>
    internal ValueTask FlushStoreAsync() => _store.FlushAsync();

    /// <summary>
    /// Creates a snapshot while serving. Origin writes from NBD clients are held at the write gate while it runs, so
    /// each lands wholly before or wholly after the snapshot: every write replied to before this call began is in the
    /// snapshot, none replied to after it returned is, and a write in flight is in it wholly or not at all. The export
    /// appears in NBD_OPT_LIST as soon as this returns.
    /// </summary>
    public async Task<StoreVolume> CreateSnapshotAsync(string name, SnapshotOptions? options = null, CancellationToken cancellationToken = default)
    {
        // Why we wait: origin writes in flight finish (and queue their replies) first; new ones wait behind us.
        await WriteGate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            return await _store.CreateSnapshotAsync(name, options, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            WriteGate.ExitExclusive();
        }
    }

    /// <summary>
    /// Deletes a snapshot while serving. If connections have its export open, fails with
    /// <see cref="NbdExportInUseException"/> ("in use by N connections") unless <paramref name="force"/>, which
    /// disconnects them first. No new connection can open the export while this runs.
    /// </summary>
    public Task DeleteSnapshotAsync(string name, bool force, CancellationToken cancellationToken = default) =>
        RemoveAsync(name, force, "snapshot deleted", () => _store.DeleteSnapshotAsync(name, cancellationToken));

    /// <summary>
    /// Merges a snapshot into the origin while serving (see <see cref="SnapshotStore.MergeSnapshotAsync"/>). Refused like
    /// <see cref="DeleteSnapshotAsync"/> while connections have the snapshot's export open, unless forced.
    /// </summary>
    public Task MergeSnapshotAsync(string name, bool force, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default) =>
        RemoveAsync(name, force, "snapshot merged into the origin", () => _store.MergeSnapshotAsync(name, progress, cancellationToken));

    private async Task RemoveAsync(string name, bool force, string why, Func<ValueTask> remove)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length == 0 || name == "origin") throw new SnapshotArgumentException($"{_store.Folder}: '{(name.Length == 0 ? "" : name)}' is the origin, not a snapshot");
        if (!Registry.BeginRemoval(name, out var open))
            throw new JournalException($"{_store.Folder}: snapshot '{name}' is already being deleted or merged");
        try
        {
            if (open.Count > 0)
            {
                if (!force) throw new NbdExportInUseException(_store.Folder, name, open.Count);
                NbdLog.Disconnecting(Logger, name, open.Count, why);
                // Why we wait: each connection finishes the store I/O it has in flight, then closes.
                await Task.WhenAll(open.Select(c => c.AbortAsync($"disconnected by the server: {why}"))).ConfigureAwait(false);
            }
            await remove().ConfigureAwait(false);
        }
        finally
        {
            Registry.EndRemoval(name);
        }
    }

    /// <summary>
    /// Stops the server: no new connections; every connection stops reading requests, finishes the ones it received and
    /// sends their replies (a client that does not read them is disconnected after
    /// <see cref="NbdServerOptions.ShutdownGrace"/>); then the store is flushed. The store stays open. Calling it again
    /// waits for the first call.
    /// </summary>
    public Task StopAsync()
    {
        lock (_lock)
        {
            if (_stopped is null)
            {
                _stopping = true;
                _stopped = StopCoreAsync();
            }
            return _stopped;
        }
    }

    private async Task StopCoreAsync()
    {
        await Task.Yield();
        _stopAccepting.Cancel();
        CloseListeners();
        Task[] loops;
        lock (_lock) loops = _acceptLoops.ToArray();
        await Task.WhenAll(loops).ConfigureAwait(false);
        NbdConnection[] open;
        lock (_lock) open = _connections.ToArray();
        NbdLog.Stopping(Logger, open.Length);
        foreach (var c in open) c.StopReading("the server is stopping");
        // Why we wait: every connection finishes what it received (bounded by the shutdown grace for its replies).
        await Task.WhenAll(open.Select(c => c.Completion)).ConfigureAwait(false);
        Diagnostics.SnapshotMetrics.Servers.Remove(this);
        await _store.FlushAsync().ConfigureAwait(false);
        NbdLog.Stopped(Logger);
    }

    private void CloseListeners()
    {
        Socket[] listeners;
        string[] paths;
        lock (_lock)
        {
            listeners = _listeners.ToArray();
            paths = _unixPaths.ToArray();
        }
        foreach (var l in listeners) l.Dispose();
        if (OperatingSystem.IsWindows()) return;
        foreach (var p in paths) UnixSocketFile.Remove(p);
    }

    /// <summary>Same as <see cref="StopAsync"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync().ConfigureAwait(false);
        }
        finally
        {
            _stopAccepting.Dispose();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"NbdServer({_store.Folder}, {string.Join(", ", Addresses)}, {ConnectionCount} connections)";
}

/// <summary>A snapshot cannot be deleted or merged: NBD connections have its export open.</summary>
public sealed class NbdExportInUseException : JournalException
{
    /// <summary>Creates the error.</summary>
    public NbdExportInUseException(string folder, string name, int connections)
        : base($"{folder}: snapshot '{name}' is in use by {connections} connection{(connections == 1 ? "" : "s")}")
    {
        Name = name;
        Connections = connections;
    }

    /// <summary>The snapshot.</summary>
    public string Name { get; }

    /// <summary>Connections that have it open.</summary>
    public int Connections { get; }
}
