using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Snapshot.Sync;

namespace Snapshot.Nbd;

/// <summary>
/// The one writer of a connection's socket in the transmission phase. Workers (and the reader, for requests refused
/// before any I/O) queue finished requests with <see cref="Enqueue"/>; whoever finds no send under way becomes the
/// sender — a worker that has just finished (<see cref="SendQueuedAsync"/>), or the sender's own loop for replies the
/// reader queued — and encodes and sends every queued reply in order: small replies (write, flush, trim and error replies, block status) are gathered into one
/// staging buffer and sent together; a READ's data is sent straight from its buffer, the reply header written into the
/// buffer's headroom just before the data, so each read costs one send and no copy. Once a reply has been sent (or
/// dropped, when the client is gone) the request's buffer and budget share are given back.
/// </summary>
/// <remarks>
/// Reply forms: without structured replies every reply is a simple reply (a READ's data follows its header; an error
/// has no data). With structured replies a READ is one <c>OFFSET_DATA</c> chunk flagged DONE (the data is complete
/// before the header is sent, so no error can follow it), an error is one <c>ERROR</c> chunk with a message, a
/// BLOCK_STATUS is one <c>BLOCK_STATUS</c> chunk per selected context (the last flagged DONE), and every other success
/// is a simple reply (the protocol allows it for replies without payload).
/// <para>Locking: <c>_lock</c> protects the queue and <c>_sending</c> (at most one sender at a time); held to add or
/// take one request. The send itself may wait on a client that does not read; the sender then holds nothing else (a
/// worker sends only after giving back its range lock and the write gate), and only this connection's budget is
/// affected.</para>
/// </remarks>
internal sealed class NbdReplySender
{
    private const int StagingBytes = 64 * 1024;
    private const int MaxMessageBytes = 1024;

    private readonly NbdConnection _connection;
    private readonly Socket _socket;
    private readonly object _lock = new();
    private readonly Queue<NbdRequest> _queue = new();
    private readonly AsyncAutoSignal _signal = new();
    private readonly byte[] _staging = new byte[StagingBytes];
    private readonly List<NbdRequest> _staged = new();
    private bool _stopping;
    private bool _broken;
    private bool _sending; // someone (a worker, or the loop) is sending; protected by _lock

    public NbdReplySender(NbdConnection connection, Socket socket)
    {
        _connection = connection;
        _socket = socket;
    }

    /// <summary>True with structured replies negotiated.</summary>
    public bool Structured { get; set; }

    /// <summary>True once a send failed (the client is gone): later replies are dropped.</summary>
    public bool Broken { get { lock (_lock) return _broken; } }

    /// <summary>
    /// Queues a finished request's reply. Never waits. The caller then calls <see cref="SendQueuedAsync"/> (a worker,
    /// once it holds nothing) or <see cref="Wake"/> (the reader, which must not wait on the client).
    /// </summary>
    public void Enqueue(NbdRequest request)
    {
        lock (_lock) _queue.Enqueue(request);
    }

    /// <summary>Queues a reply and has the sender's own loop send it (for the reader, which never sends).</summary>
    public void EnqueueAndWake(NbdRequest request)
    {
        Enqueue(request);
        _signal.Set();
    }

    /// <summary>
    /// Sends what is queued if no one else is sending (the caller becomes the sender until the queue is empty);
    /// otherwise returns at once (the one sending takes this reply too). Saves a thread hop per reply. The caller must
    /// hold nothing: the send waits on the client.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendQueuedAsync()
    {
        lock (_lock)
        {
            if (_sending || _queue.Count == 0) return;
            _sending = true;
        }
        await DrainAsync().ConfigureAwait(false);
    }

    /// <summary>Wakes the sender's loop (it sends what is queued unless someone else is sending).</summary>
    public void Wake() => _signal.Set();

    /// <summary>Ends the loop once the queue is empty.</summary>
    public void Stop()
    {
        lock (_lock) _stopping = true;
        _signal.Set();
    }

    /// <summary>
    /// The sender's loop: sends replies queued by the reader, and any left when a worker stopped sending; returns after
    /// <see cref="Stop"/> once every queued reply was sent or dropped.
    /// </summary>
    public async Task RunAsync()
    {
        while (true)
        {
            // Why we wait: for a reply to send (or the stop). Nothing is held.
            await _signal.WaitAsync().ConfigureAwait(false);
            bool drain;
            bool stopping;
            lock (_lock)
            {
                stopping = _stopping;
                drain = !_sending && _queue.Count > 0;
                if (drain) _sending = true;
                if (stopping && !_sending && _queue.Count == 0) return;
            }
            if (drain) await DrainAsync().ConfigureAwait(false);
            if (stopping) _signal.Set(); // look again: the queue may have been taken over by a worker mid-way
        }
    }

    /// <summary>
    /// Sends every queued reply, in order; the caller set <c>_sending</c>. Clears it under the lock only when the queue
    /// is empty, so a reply queued meanwhile is never left behind (its enqueuer saw <c>_sending</c> set).
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DrainAsync()
    {
        while (true)
        {
            NbdRequest? r;
            lock (_lock)
            {
                _queue.TryDequeue(out r);
                if (r is null && _staged.Count == 0)
                {
                    _sending = false;
                    if (_stopping) _signal.Set();
                    return;
                }
            }
            if (r is null)
            {
                await FlushStagingAsync().ConfigureAwait(false);
                continue;
            }
            if (r.Error == 0 && r.Type == NbdProtocol.CmdRead && r.Length > 0)
            {
                await FlushStagingAsync().ConfigureAwait(false);
                await SendReadAsync(r).ConfigureAwait(false);
                _connection.ReplyDone(r);
                continue;
            }
            int need = SmallReplyBytes(r);
            if (need > StagingBytes - _stagedBytes) await FlushStagingAsync().ConfigureAwait(false);
            _stagedBytes += EncodeSmall(r, _staging.AsSpan(_stagedBytes));
            _staged.Add(r);
        }
    }

    private int _stagedBytes;

    private async ValueTask FlushStagingAsync()
    {
        if (_staged.Count == 0) return;
        await SendAsync(_staging.AsMemory(0, _stagedBytes)).ConfigureAwait(false);
        foreach (var r in _staged) _connection.ReplyDone(r);
        _staged.Clear();
        _stagedBytes = 0;
    }

    private async ValueTask SendReadAsync(NbdRequest r)
    {
        var b = r.Buffer!;
        int start;
        if (Structured)
        {
            start = NbdBufferPool.Headroom - NbdProtocol.StructuredHeaderBytes - 8;
            var h = b.AsSpan(start);
            BinaryPrimitives.WriteUInt32BigEndian(h, NbdProtocol.StructuredReplyMagic);
            BinaryPrimitives.WriteUInt16BigEndian(h[4..], NbdProtocol.ReplyFlagDone);
            BinaryPrimitives.WriteUInt16BigEndian(h[6..], NbdProtocol.ReplyTypeOffsetData);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], r.Handle);
            BinaryPrimitives.WriteUInt32BigEndian(h[16..], 8 + r.Length);
            BinaryPrimitives.WriteUInt64BigEndian(h[20..], r.Offset);
        }
        else
        {
            start = NbdBufferPool.Headroom - NbdProtocol.SimpleReplyBytes;
            WriteSimple(b.AsSpan(start), 0, r.Handle);
        }
        await SendAsync(b.AsMemory(start, NbdBufferPool.Headroom - start + (int)r.Length)).ConfigureAwait(false);
    }

    // Since when (Environment.TickCount64) a send has been under way without progress: set when it starts and again each
    // time a piece of it has gone out; 0 when none is.
    private long _sendingSince;

    /// <summary>Most bytes handed to the socket in one call: a large reply goes in pieces, each one progress.</summary>
    private const int SendPieceBytes = 256 * 1024;

    /// <summary>
    /// Since when the send under way has made no progress (<see cref="Environment.TickCount64"/>: its start, or the last
    /// piece that went out), or 0 when none is. A client that takes its replies, however slowly, keeps this recent.
    /// </summary>
    public long SendingSince => Volatile.Read(ref _sendingSince);

    private async ValueTask SendAsync(ReadOnlyMemory<byte> data)
    {
        if (Broken) return;
        Volatile.Write(ref _sendingSince, Environment.TickCount64);
        try
        {
            while (data.Length > 0)
            {
                // Why we wait: the client reads slowly (or not at all); only this connection waits (and, past the
                // server's stalled-client timeout while others wait for buffer room, it is disconnected).
                int n = await _socket.SendAsync(data[..Math.Min(data.Length, SendPieceBytes)], SocketFlags.None).ConfigureAwait(false);
                data = data[n..];
                if (n > 0) Volatile.Write(ref _sendingSince, Environment.TickCount64);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            bool first;
            lock (_lock)
            {
                first = !_broken;
                _broken = true;
            }
            if (first) _connection.OnSendFailed(e);
        }
        finally
        {
            Volatile.Write(ref _sendingSince, 0);
        }
    }

    private int SmallReplyBytes(NbdRequest r)
    {
        if (r.Error != 0)
            return Structured ? NbdProtocol.StructuredHeaderBytes + 6 + MessageBytes(r) : NbdProtocol.SimpleReplyBytes;
        if (r.Type == NbdProtocol.CmdBlockStatus)
        {
            int contexts = 0;
            uint last = uint.MaxValue;
            foreach (var e in r.Extents) if (e.ContextId != last) { contexts++; last = e.ContextId; }
            return contexts * (NbdProtocol.StructuredHeaderBytes + 4) + r.Extents.Count * 8;
        }
        return Structured && r.Type == NbdProtocol.CmdRead ? NbdProtocol.StructuredHeaderBytes : NbdProtocol.SimpleReplyBytes;
    }

    private static int MessageBytes(NbdRequest r) =>
        r.ErrorMessage is null ? 0 : Math.Min(MaxMessageBytes, Encoding.UTF8.GetByteCount(r.ErrorMessage));

    private int EncodeSmall(NbdRequest r, Span<byte> d)
    {
        if (r.Error != 0)
        {
            if (!Structured)
            {
                WriteSimple(d, r.Error, r.Handle);
                return NbdProtocol.SimpleReplyBytes;
            }
            int m = MessageBytes(r);
            WriteChunkHeader(d, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, r.Handle, (uint)(6 + m));
            BinaryPrimitives.WriteUInt32BigEndian(d[20..], r.Error);
            BinaryPrimitives.WriteUInt16BigEndian(d[24..], (ushort)m);
            if (m > 0) Utf8Prefix(r.ErrorMessage!, d.Slice(26, m));
            return NbdProtocol.StructuredHeaderBytes + 6 + m;
        }
        if (r.Type == NbdProtocol.CmdBlockStatus)
        {
            int at = 0;
            int i = 0;
            while (i < r.Extents.Count)
            {
                uint id = r.Extents[i].ContextId;
                int j = i;
                while (j < r.Extents.Count && r.Extents[j].ContextId == id) j++;
                bool last = j == r.Extents.Count;
                WriteChunkHeader(d[at..], last ? NbdProtocol.ReplyFlagDone : (ushort)0, NbdProtocol.ReplyTypeBlockStatus, r.Handle, (uint)(4 + (j - i) * 8));
                at += NbdProtocol.StructuredHeaderBytes;
                BinaryPrimitives.WriteUInt32BigEndian(d[at..], id);
                at += 4;
                for (int k = i; k < j; k++)
                {
                    BinaryPrimitives.WriteUInt32BigEndian(d[at..], r.Extents[k].Length);
                    BinaryPrimitives.WriteUInt32BigEndian(d[(at + 4)..], r.Extents[k].Flags);
                    at += 8;
                }
                i = j;
            }
            return at;
        }
        if (Structured && r.Type == NbdProtocol.CmdRead)
        {
            // A zero-length read: no content chunk can describe it, so the reply is NONE, DONE.
            WriteChunkHeader(d, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeNone, r.Handle, 0);
            return NbdProtocol.StructuredHeaderBytes;
        }
        WriteSimple(d, 0, r.Handle);
        return NbdProtocol.SimpleReplyBytes;
    }

    private static void WriteSimple(Span<byte> d, uint error, ulong handle)
    {
        BinaryPrimitives.WriteUInt32BigEndian(d, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(d[8..], handle);
    }

    private static void WriteChunkHeader(Span<byte> d, ushort flags, ushort type, ulong handle, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(d, NbdProtocol.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(d[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(d[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(d[8..], handle);
        BinaryPrimitives.WriteUInt32BigEndian(d[16..], length);
    }

    /// <summary>Writes as much of <paramref name="text"/> as fits in <paramref name="dest"/> (whole characters).</summary>
    private static void Utf8Prefix(string text, Span<byte> dest)
    {
        var encoder = Encoding.UTF8.GetEncoder();
        encoder.Convert(text, dest, flush: true, out _, out int used, out _);
        dest[used..].Fill((byte)' ');
    }
}
