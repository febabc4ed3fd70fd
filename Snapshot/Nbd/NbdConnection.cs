using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using Journal;
using Journal.Storage;
using Microsoft.Extensions.Logging;

namespace Snapshot.Nbd;

/// <summary>
/// One client connection: the handshake (<see cref="NbdHandshake"/>), then the transmission phase, in which three kinds
/// of tasks share the work:
/// <list type="bullet">
/// <item><b>the reader</b> (this class) reads request headers (and WRITE payloads), checks them, takes each request's
/// share of the in-flight budget (<see cref="NbdInflightBudget"/>, waiting holding nothing when the connection is at its
/// bound, so the socket is not read), and hands the request to an idle worker; requests refused before any I/O, TRIMs
/// and BLOCK_STATUS are answered at once;</item>
/// <item><b>workers</b> (<see cref="NbdWorker"/>, at most one per request in flight, reused) run the store I/O, so
/// requests are pipelined and finish in any order;</item>
/// <item><b>the sender</b> (<see cref="NbdReplySender"/>) writes the replies in the order they finish and gives each
/// request's budget share back once its reply is sent.</item>
/// </list>
/// The connection ends when the client sends DISC or closes, on a protocol error (a bad request magic: the stream can
/// no longer be parsed), when the server stops, or when it is disconnected because its export is deleted or merged.
/// Requests already received are finished first (their replies sent, or dropped if the client is gone), within the
/// server's shutdown grace. Every end is one log line.
/// </summary>
internal sealed class NbdConnection
{
    private const int ReceiveBufferBytes = 64 * 1024;

    private readonly NbdServer _server;
    private readonly Socket _socket;
    private readonly ILogger _log;
    private readonly byte[] _rx = new byte[ReceiveBufferBytes];
    private int _rxStart;
    private int _rxEnd;
    private readonly CancellationTokenSource _stopReading = new();
    private readonly Func<bool> _stopRequested;
    private string? _stopReason;
    private int _aborted;

    // Workers: _workers (the lock) protects _idle, _workerCount and _workersStopped.
    private readonly object _workers = new();
    private readonly Stack<NbdWorker> _idle = new();
    private readonly List<NbdWorker> _allWorkers = new();
    private bool _workersStopped;

    // Request objects not in use; _free is its own lock.
    private readonly Stack<NbdRequest> _free = new();

    // Drain: set when the reader has stopped; completed when nothing is in flight any more. _drainLock protects both.
    private readonly object _drainLock = new();
    private TaskCompletionSource? _drained;

    private long _requests;

    public NbdConnection(NbdServer server, Socket socket, long id, string peer)
    {
        _server = server;
        _socket = socket;
        _log = server.Logger;
        Id = id;
        Peer = peer;
        Budget = new NbdInflightBudget(server.Options.MaxRequestsInFlight, server.Options.MaxBytesInFlight);
        Sender = new NbdReplySender(this, socket);
        _stopRequested = () => _stopReading.IsCancellationRequested;
    }

    /// <summary>Connection number (for log lines).</summary>
    public long Id { get; }

    /// <summary>The client's address.</summary>
    public string Peer { get; }

    /// <summary>The negotiated state.</summary>
    public NbdSession Session { get; } = new();

    /// <summary>The export in use, once in transmission.</summary>
    public NbdExport? Export => Session.Export;

    /// <summary>The connection's in-flight budget.</summary>
    public NbdInflightBudget Budget { get; }

    /// <summary>The reply sender.</summary>
    public NbdReplySender Sender { get; }

    /// <summary>The server.</summary>
    public NbdServer Server => _server;

    /// <summary>The logger.</summary>
    public ILogger Log => _log;

    /// <summary>Its place among the server's connections still negotiating; null once it has left them. The server's lock protects it.</summary>
    internal LinkedListNode<NbdConnection>? Negotiating { get; set; }

    /// <summary>When it was accepted (<see cref="Environment.TickCount64"/>).</summary>
    internal long AcceptedAt { get; } = Environment.TickCount64;

    /// <summary>Requests received in the transmission phase.</summary>
    public long RequestCount => Interlocked.Read(ref _requests);

    /// <summary>Completes when the connection has ended and released everything.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    /// <summary>Starts the connection's life; <see cref="Completion"/> tracks it.</summary>
    public void Start() => Completion = Task.Run(RunAsync);

    /// <summary>
    /// Stops reading requests (the server is stopping): requests already received are finished and answered, then the
    /// connection closes.
    /// </summary>
    public void StopReading(string reason)
    {
        Interlocked.CompareExchange(ref _stopReason, reason, null);
        try { _stopReading.Cancel(); } catch (ObjectDisposedException) { }
        Budget.WakeReader();
    }

    /// <summary>
    /// Disconnects the client now (its export is being deleted or merged): stops reading, closes the socket (replies
    /// not yet sent are dropped), and waits until the requests in flight have finished their store I/O.
    /// </summary>
    public async Task AbortAsync(string reason)
    {
        StopReading(reason);
        Interlocked.Exchange(ref _aborted, 1);
        CloseSocket();
        // Why we wait: the caller removes the export next; the requests in flight on it finish their I/O first.
        await Completion.ConfigureAwait(false);
    }

    private async Task RunAsync()
    {
        string reason = "closed";
        bool handshakeDone = false;
        try
        {
            using (var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stopReading.Token))
            {
                handshakeTimeout.CancelAfter(_server.Options.HandshakeTimeout);
                var outcome = await new NbdHandshake(this).RunAsync(handshakeTimeout.Token).ConfigureAwait(false);
                if (outcome is not null)
                {
                    reason = outcome;
                    return;
                }
                handshakeDone = true;
            }
            reason = await TransmitAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            reason = _stopReason ?? (handshakeDone ? "closed" : string.Create(CultureInfo.InvariantCulture, $"handshake not finished within {_server.Options.HandshakeTimeout.TotalSeconds:0.###} s"));
            if (!handshakeDone && _stopReason is null) NbdLog.HandshakeFailed(_log, Id, reason);
        }
        catch (Exception e) when (IsConnectionError(e))
        {
            reason = Volatile.Read(ref _aborted) != 0 && _stopReason is not null ? _stopReason
                : handshakeDone ? $"client vanished: {OneLine(e)}" : $"client vanished during the handshake: {OneLine(e)}";
        }
        catch (Exception e)
        {
            NbdLog.InternalError(_log, Id, e.GetType().Name, OneLine(e));
            reason = "internal error";
        }
        finally
        {
            CloseSocket();
            if (Session.Export is { } export) _server.Registry.Close(export, this);
            _server.OnConnectionEnded(this);
            long errors = ErrorReplies;
            if (errors > LoggedErrorsPerConnection) NbdLog.ErrorsSummary(_log, Id, errors - LoggedErrorsPerConnection, errors);
            NbdLog.Closed(_log, Id, reason, RequestCount);
            _stopReading.Dispose();
        }
    }

    /// <summary>True for the errors a vanished or misbehaving peer causes on the socket.</summary>
    internal static bool IsConnectionError(Exception e) => e is SocketException or IOException or ObjectDisposedException;

    internal static string OneLine(Exception e) => e.Message.ReplaceLineEndings(" ").Trim();

    private void CloseSocket()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _socket.Dispose();
    }

    // ---- transmission ----

    private async Task<string> TransmitAsync()
    {
        Sender.Structured = Session.Structured;
        var sending = Sender.RunAsync();
        string reason;
        try
        {
            reason = await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            reason = _stopReason ?? "stopped";
        }
        catch (Exception e) when (IsConnectionError(e))
        {
            reason = Volatile.Read(ref _aborted) != 0 && _stopReason is not null ? _stopReason : $"client vanished: {OneLine(e)}";
        }
        await DrainAsync().ConfigureAwait(false);
        Sender.Stop();
        await sending.ConfigureAwait(false);
        StopWorkers();
        return reason;
    }

    /// <summary>
    /// Waits until every request received has been answered (or dropped). Past the server's shutdown grace (a client that
    /// does not read its replies) the socket is closed, which makes the pending sends fail and drop their replies.
    /// </summary>
    private async Task DrainAsync()
    {
        Task drained;
        lock (_drainLock)
        {
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (Budget.Requests == 0) _drained.TrySetResult();
            drained = _drained.Task;
        }
        // Why we wait: requests in flight finish their store I/O and their replies go out.
        if (await Task.WhenAny(drained, Task.Delay(_server.Options.ShutdownGrace)).ConfigureAwait(false) != drained)
        {
            CloseSocket();
            // Why we wait: with the socket closed every reply is dropped; what is left is store I/O, which finishes.
            await drained.ConfigureAwait(false);
        }
    }

    /// <summary>The reader: one request at a time from the socket, never more than the budget allows in flight.</summary>
    private async Task<string> ReadLoopAsync()
    {
        var export = Session.Export!;
        var ct = _stopReading.Token;
        var header = new byte[NbdProtocol.RequestHeaderBytes];
        while (true)
        {
            int got = await ReceiveAsync(header, ct).ConfigureAwait(false);
            if (got == 0) return "client closed the connection";
            if (got < header.Length) return $"client vanished in the middle of a request header ({got} of {header.Length} bytes)";
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
            ulong handle = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24));
            if (magic != NbdProtocol.RequestMagic)
            {
                string why = $"bad request magic 0x{magic:x8} (expected 0x{NbdProtocol.RequestMagic:x8})";
                NbdLog.ProtocolError(_log, Id, why);
                return why;
            }
            if (type == NbdProtocol.CmdDisc) return "client disconnected (NBD_CMD_DISC)";
            Interlocked.Increment(ref _requests);

            uint error = Check(export, type, flags, offset, length, out string? message);
            bool payload = type == NbdProtocol.CmdWrite;
            // Charged: the size of the buffer the request gets (a READ's for its data, a WRITE's for its payload).
            long charge = error == 0 && type is NbdProtocol.CmdRead or NbdProtocol.CmdWrite ? NbdBufferPool.ClassBytes(length) : 0;
            // Why we wait: the connection is at its in-flight bound; until its replies go out the socket is not read.
            if (!await Budget.AcquireAsync(charge, _stopRequested).ConfigureAwait(false)) return _stopReason ?? "stopped";
            // Why we wait: the server is at its byte bound for all connections; room comes back as others' replies go
            // out. Held: this connection's own request slot, nothing another connection needs (NbdServerBudget).
            if (charge > 0 && !await _server.Room.AcquireAsync(charge, ct).ConfigureAwait(false))
            {
                Budget.Release(charge);
                return _stopReason ?? "stopped";
            }
            var r = RentRequest();
            r.Type = type;
            r.Flags = flags;
            r.Handle = handle;
            r.Offset = offset;
            r.Length = length;
            r.Charged = charge;
            if (payload)
            {
                bool complete;
                try
                {
                    if (error == 0)
                    {
                        r.Buffer = _server.Buffers.Rent((int)length);
                        Volatile.Write(ref _payloadSince, Environment.TickCount64);
                        complete = await ReceiveAsync(r.Buffer.AsMemory(NbdBufferPool.Headroom, (int)length), ct).ConfigureAwait(false) == length;
                        Volatile.Write(ref _payloadSince, 0);
                    }
                    else
                    {
                        complete = await DiscardAsync(length, ct).ConfigureAwait(false);
                    }
                }
                catch
                {
                    // The request never runs: give its share back before the connection ends.
                    ReplyDone(r);
                    throw;
                }
                if (!complete)
                {
                    ReplyDone(r);
                    return $"client vanished in the middle of a WRITE payload ({length} bytes at offset {offset})";
                }
            }
            if (error != 0)
            {
                r.Fail(error, message!);
                LogFailure(r);
                Sender.EnqueueAndWake(r);
                continue;
            }
            _server.Counters.Request(type, length);
            switch (type)
            {
                case NbdProtocol.CmdTrim:
                    // TRIM is a hint the store does not act on: nothing is freed (a snapshot may share the data), and
                    // since nothing is written there is nothing to make durable for FUA.
                    Sender.EnqueueAndWake(r);
                    break;
                case NbdProtocol.CmdBlockStatus when ImmediateContexts():
                    // Contexts that answer without I/O (base:allocation) are answered here; the others (dirty bitmaps)
                    // run on a worker like any store request.
                    var described = DescribeBlocksAsync(export, r, _extents);
                    if (!described.IsCompleted) throw new InvalidOperationException("an immediate metadata context did not complete at once");
                    described.GetAwaiter().GetResult();
                    Sender.EnqueueAndWake(r);
                    break;
                default:
                    Dispatch(r);
                    break;
            }
        }
    }

    /// <summary>
    /// Checks a request against the protocol and the export before any I/O; returns 0 or the NBD error (with a message).
    /// Order: unknown command, flags not valid for it, read-only, size bound, alignment, range.
    /// </summary>
    private uint Check(NbdExport export, ushort type, ushort flags, ulong offset, uint length, out string? message)
    {
        message = null;
        ushort allowed;
        switch (type)
        {
            case NbdProtocol.CmdRead: allowed = (ushort)(NbdProtocol.CmdFlagFua | (Session.Structured ? NbdProtocol.CmdFlagDf : 0)); break;
            case NbdProtocol.CmdWrite: allowed = NbdProtocol.CmdFlagFua; break;
            case NbdProtocol.CmdFlush: allowed = NbdProtocol.CmdFlagFua; break;
            case NbdProtocol.CmdTrim: allowed = NbdProtocol.CmdFlagFua; break;
            case NbdProtocol.CmdWriteZeroes: allowed = NbdProtocol.CmdFlagFua | NbdProtocol.CmdFlagNoHole; break;
            case NbdProtocol.CmdBlockStatus: allowed = NbdProtocol.CmdFlagFua | NbdProtocol.CmdFlagReqOne; break;
            default:
                message = $"unknown command {type}";
                return NbdProtocol.EINVAL;
        }
        if ((flags & ~allowed) != 0)
        {
            message = $"flags 0x{flags:x4} not valid for {NbdProtocol.CommandName(type)}";
            return NbdProtocol.EINVAL;
        }
        if (type == NbdProtocol.CmdFlush) return 0;
        if (type == NbdProtocol.CmdBlockStatus && Session.Contexts.Count == 0)
        {
            message = "BLOCK_STATUS without a metadata context selected (NBD_OPT_SET_META_CONTEXT)";
            return NbdProtocol.EINVAL;
        }
        bool writes = type is NbdProtocol.CmdWrite or NbdProtocol.CmdTrim or NbdProtocol.CmdWriteZeroes;
        if (writes && export.ReadOnly)
        {
            message = $"export {export.Name} is read-only";
            return NbdProtocol.EPERM;
        }
        if (type is NbdProtocol.CmdRead or NbdProtocol.CmdWrite && length > NbdServerOptions.MaxRequestBytes)
        {
            message = $"{length} bytes is more than the maximum block size ({NbdServerOptions.MaxRequestBytes} bytes)";
            return NbdProtocol.EINVAL;
        }
        if ((offset & (BlockDevice.SectorSize - 1)) != 0 || (length & (BlockDevice.SectorSize - 1)) != 0)
        {
            message = $"offset {offset} and length {length} must be multiples of the minimum block size ({BlockDevice.SectorSize} bytes)";
            return NbdProtocol.EINVAL;
        }
        ulong size = (ulong)export.SizeBytes;
        if (offset > size || length > size - offset)
        {
            message = $"{length} bytes at offset {offset} go past the end of {export.Name} ({size} bytes)";
            return type is NbdProtocol.CmdWrite or NbdProtocol.CmdWriteZeroes ? NbdProtocol.ENOSPC : NbdProtocol.EINVAL;
        }
        return 0;
    }

    /// <summary>Most extents in one BLOCK_STATUS reply, over all selected contexts (they fit the reply staging buffer).</summary>
    internal const int MaxExtentsPerReply = 2048;

    // The reader's scratch for immediate contexts (workers have their own).
    private readonly (uint Length, uint Flags)[] _extents = new (uint, uint)[MaxExtentsPerReply];

    private bool ImmediateContexts()
    {
        foreach (var (_, context) in Session.Contexts) if (!context.IsImmediate) return false;
        return true;
    }

    /// <summary>
    /// Fills a BLOCK_STATUS request's extents, context by context (each gets an equal share of
    /// <see cref="MaxExtentsPerReply"/>); a context that fails (a dirty bitmap whose snapshot went away) fails the request.
    /// Completes at once when every context is immediate.
    /// </summary>
    internal async ValueTask DescribeBlocksAsync(NbdExport export, NbdRequest r, (uint Length, uint Flags)[] extents)
    {
        int share = Math.Max(1, MaxExtentsPerReply / Math.Max(1, Session.Contexts.Count));
        foreach (var (id, context) in Session.Contexts)
        {
            int n = 0;
            if (r.Length != 0)
            {
                try
                {
                    n = await context.DescribeAsync(export.Volume, (long)r.Offset, r.Length, extents, share, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is Journal.JournalException or ArgumentException or IOException or ObjectDisposedException)
                {
                    r.Extents.Clear();
                    var (error, message) = e is ArgumentException ? (NbdProtocol.EINVAL, OneLine(e)) : MapError(e);
                    r.Fail(error, $"{context.Name}: {message}");
                    LogFailure(r);
                    return;
                }
            }
            if (n == 0)
            {
                // A zero-length query still gets one extent (the protocol requires at least one; it may pass the end
                // of the request, not of the export): one sector, or what is left of the export.
                uint one = (uint)Math.Min(BlockDevice.SectorSize, export.SizeBytes - (long)r.Offset);
                if (one == 0)
                {
                    r.Extents.Clear();
                    r.Fail(NbdProtocol.EINVAL, "BLOCK_STATUS at the end of the export");
                    LogFailure(r);
                    return;
                }
                extents[0] = (one, 0);
                n = 1;
            }
            if ((r.Flags & NbdProtocol.CmdFlagReqOne) != 0) n = 1;
            for (int i = 0; i < n; i++) r.Extents.Add((id, extents[i].Length, extents[i].Flags));
        }
    }

    // ---- workers ----

    private void Dispatch(NbdRequest r)
    {
        NbdWorker worker;
        lock (_workers)
        {
            if (!_idle.TryPop(out worker!))
            {
                worker = new NbdWorker(this);
                _allWorkers.Add(worker);
            }
        }
        worker.Run(r);
    }

    /// <summary>A worker finished its request (its reply is queued) and is ready for another.</summary>
    internal void WorkerIdle(NbdWorker worker)
    {
        lock (_workers)
        {
            if (!_workersStopped) _idle.Push(worker);
        }
    }

    private void StopWorkers()
    {
        lock (_workers)
        {
            _workersStopped = true;
            _idle.Clear();
        }
    }

    // ---- requests and replies ----

    private NbdRequest RentRequest()
    {
        lock (_free) return _free.TryPop(out var r) ? r : new NbdRequest();
    }

    /// <summary>
    /// A request's reply was sent (or dropped): its buffer goes back to the pool, its budget share to the reader, the
    /// request object to the free list.
    /// </summary>
    internal void ReplyDone(NbdRequest r)
    {
        if (r.Buffer is { } b) _server.Buffers.Return(b);
        long charged = r.Charged;
        r.Reset();
        lock (_free) _free.Push(r);
        _server.Room.Release(charged);
        Budget.Release(charged);
        lock (_drainLock)
        {
            if (_drained is not null && Budget.Requests == 0) _drained.TrySetResult();
        }
    }

    /// <summary>
    /// A WRITE's data has been written (or failed): its buffer and bytes are given back now, before its reply is queued,
    /// so a client that does not read its replies holds no write data. The request itself stays in flight until its
    /// reply is sent.
    /// </summary>
    internal void PayloadDone(NbdRequest r)
    {
        if (r.Buffer is { } b) _server.Buffers.Return(b);
        r.Buffer = null;
        long charged = r.Charged;
        r.Charged = 0;
        _server.Room.Release(charged);
        Budget.ReleaseBytes(charged);
    }

    // Since when (Environment.TickCount64) the reader has been receiving a WRITE's payload without progress: set when it
    // starts and again each time bytes of it arrive; 0 when it is not receiving one.
    private long _payloadSince;

    /// <summary>Bytes arrived: a payload under way made progress (a client sending slowly is not stalled).</summary>
    private void Progressed()
    {
        if (Volatile.Read(ref _payloadSince) != 0) Volatile.Write(ref _payloadSince, Environment.TickCount64);
    }

    /// <summary>
    /// How long the client has been holding up this connection's buffers without progress: the longer of the send under
    /// way (a reply it does not take) and the WRITE payload being received (data it does not send), each counted from its
    /// start or its last progress; zero when neither.
    /// </summary>
    internal TimeSpan StalledFor()
    {
        long now = Environment.TickCount64;
        long since = Math.Min(Since(Sender.SendingSince), Since(Volatile.Read(ref _payloadSince)));
        return since == long.MaxValue ? TimeSpan.Zero : TimeSpan.FromMilliseconds(now - since);

        static long Since(long t) => t == 0 ? long.MaxValue : t;
    }

    /// <summary>
    /// Disconnects the client now without waiting (it held buffer room too long): stops reading and closes the socket,
    /// so its replies are dropped and its buffers given back as its requests finish. False if it was already done.
    /// </summary>
    internal bool Disconnect(string reason)
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return false;
        StopReading(reason);
        CloseSocket();
        return true;
    }

    /// <summary>The sender could not write to the socket: the client is gone; replies from now on are dropped.</summary>
    internal void OnSendFailed(Exception e)
    {
        if (Volatile.Read(ref _aborted) == 0) NbdLog.SendFailed(_log, Id, OneLine(e));
        StopReading("client stopped taking replies");
    }

    /// <summary>Error lines one connection logs; past them its errors are counted, not logged.</summary>
    internal const int LoggedErrorsPerConnection = 10;

    // Error replies of this connection (refused options and failed requests); interlocked (reader and workers).
    private long _errorReplies;

    /// <summary>Error replies this connection has had (refused options and failed requests).</summary>
    public long ErrorReplies => Interlocked.Read(ref _errorReplies);

    /// <summary>
    /// Counts an error reply of this connection; true while it is one of the first <see cref="LoggedErrorsPerConnection"/>,
    /// which are logged. The first one past them logs one line saying the rest are counted but not logged, and the
    /// connection's close logs how many were not (<see cref="RunAsync"/>): one client cannot turn its bad requests into
    /// as many log lines, and the counters stay exact.
    /// </summary>
    internal bool CountError()
    {
        long n = Interlocked.Increment(ref _errorReplies);
        if (n <= LoggedErrorsPerConnection) return true;
        if (n == LoggedErrorsPerConnection + 1) NbdLog.ErrorsNotLogged(_log, Id, LoggedErrorsPerConnection);
        return false;
    }

    /// <summary>Counts a failed request, and logs it (one line) unless the connection is past its logged errors.</summary>
    internal void LogFailure(NbdRequest r)
    {
        _server.Counters.Error();
        if (CountError()) NbdLog.RequestFailed(_log, Id, Export?.Name ?? "-", r.Describe(), ErrorName(r.Error), r.ErrorMessage ?? "");
    }

    /// <summary>The NBD error for an exception from the store, and its one-line message.</summary>
    internal (uint Error, string Message) MapError(Exception e)
    {
        string m = OneLine(e);
        return e switch
        {
            OperationCanceledException => (NbdProtocol.ESHUTDOWN, "the server is shutting down"),
            SnapshotUnavailableException => (NbdProtocol.EPERM, m),
            ObjectDisposedException => (NbdProtocol.ESHUTDOWN, "the store is closed"),
            IOException io when io.HResult == 28 || m.Contains("no space", StringComparison.OrdinalIgnoreCase) => (NbdProtocol.ENOSPC, m),
            JournalException j when m.EndsWith("store is closed", StringComparison.Ordinal) => (NbdProtocol.ESHUTDOWN, m),
            _ => (NbdProtocol.EIO, m),
        };
    }

    internal static string ErrorName(uint error) => error switch
    {
        NbdProtocol.EPERM => "EPERM",
        NbdProtocol.EIO => "EIO",
        NbdProtocol.ENOMEM => "ENOMEM",
        NbdProtocol.EINVAL => "EINVAL",
        NbdProtocol.ENOSPC => "ENOSPC",
        NbdProtocol.EOVERFLOW => "EOVERFLOW",
        NbdProtocol.ENOTSUP => "ENOTSUP",
        NbdProtocol.ESHUTDOWN => "ESHUTDOWN",
        _ => $"error {error}",
    };

    // ---- socket input ----

    /// <summary>
    /// Fills <paramref name="dest"/> from the socket (through the receive buffer); returns the bytes read, less than
    /// asked only at the end of the stream.
    /// </summary>
    internal async ValueTask<int> ReceiveAsync(Memory<byte> dest, CancellationToken ct)
    {
        int done = 0;
        int buffered = _rxEnd - _rxStart;
        if (buffered > 0)
        {
            int n = Math.Min(buffered, dest.Length);
            _rx.AsMemory(_rxStart, n).CopyTo(dest);
            _rxStart += n;
            done = n;
        }
        while (done < dest.Length)
        {
            int want = dest.Length - done;
            if (want >= _rx.Length / 2)
            {
                // Large payloads go straight into their buffer.
                // Why we wait: for the client's bytes.
                int n = await _socket.ReceiveAsync(dest[done..], SocketFlags.None, ct).ConfigureAwait(false);
                if (n == 0) return done;
                done += n;
                Progressed();
            }
            else
            {
                // Small reads go through the receive buffer, so one receive usually brings several request headers.
                // Why we wait: for the client's bytes.
                int n = await _socket.ReceiveAsync(_rx.AsMemory(), SocketFlags.None, ct).ConfigureAwait(false);
                if (n == 0) return done;
                Progressed();
                int take = Math.Min(n, want);
                _rx.AsMemory(0, take).CopyTo(dest[done..]);
                done += take;
                _rxStart = take;
                _rxEnd = n;
            }
        }
        return done;
    }

    /// <summary>Reads and drops <paramref name="length"/> bytes (the payload of a refused WRITE); false at the end of the stream.</summary>
    private async ValueTask<bool> DiscardAsync(uint length, CancellationToken ct)
    {
        var scratch = _server.Buffers.Rent(64 * 1024);
        try
        {
            long left = length;
            while (left > 0)
            {
                int n = (int)Math.Min(left, 64 * 1024);
                if (await ReceiveAsync(scratch.AsMemory(0, n), ct).ConfigureAwait(false) < n) return false;
                left -= n;
            }
            return true;
        }
        finally
        {
            _server.Buffers.Return(scratch);
        }
    }

    /// <summary>Sends all of <paramref name="data"/> (handshake only; the transmission phase sends through the sender).</summary>
    internal async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        while (data.Length > 0)
        {
            // Why we wait: the client reads slowly.
            int n = await _socket.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false);
            data = data[n..];
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"NbdConnection(#{Id}, {Peer}, {Export?.Name ?? "negotiating"})";
}
