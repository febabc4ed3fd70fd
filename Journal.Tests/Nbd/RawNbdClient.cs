using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Snapshot.Nbd;

namespace Journal.Tests.Nbd;

/// <summary>
/// A minimal NBD client on a raw socket, written from the protocol document for these tests: it can send anything,
/// well-formed or not, and parses what the server answers (option replies, simple and structured replies, interleaved).
/// Every receive has a watchdog, so a server that stops answering fails the test instead of hanging it.
/// </summary>
internal sealed class RawNbdClient : IAsyncDisposable
{
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(60);

    private readonly Dictionary<ulong, uint> _pendingReads = new();
    private readonly Dictionary<ulong, Reply> _partial = new();
    private ulong _nextHandle = 1;

    private RawNbdClient(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    /// <summary>Structured replies negotiated (set by <see cref="NegotiateAsync"/>).</summary>
    public bool Structured { get; private set; }

    /// <summary>Export size from the negotiation.</summary>
    public ulong ExportSize { get; private set; }

    /// <summary>Transmission flags from the negotiation.</summary>
    public ushort TransmissionFlags { get; private set; }

    /// <summary>Context ids the server gave for SET_META_CONTEXT, by name.</summary>
    public Dictionary<string, uint> Contexts { get; } = new();

    public static async Task<RawNbdClient> ConnectAsync(string unixSocket)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var cts = new CancellationTokenSource(Watchdog);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(unixSocket), cts.Token);
        return new RawNbdClient(s);
    }

    public ulong NextHandle() => _nextHandle++;

    // ---- raw I/O ----

    public async Task SendAsync(ReadOnlyMemory<byte> data, bool watchdog = true)
    {
        using var cts = new CancellationTokenSource(watchdog ? Watchdog : Timeout.InfiniteTimeSpan);
        while (data.Length > 0)
        {
            int n = await Socket.SendAsync(data, SocketFlags.None, cts.Token);
            data = data[n..];
        }
    }

    /// <summary>Reads exactly <paramref name="n"/> bytes; throws <see cref="EndOfStreamException"/> if the server closes first.</summary>
    public async Task<byte[]> ReceiveExactAsync(int n)
    {
        var b = new byte[n];
        using var cts = new CancellationTokenSource(Watchdog);
        int got = 0;
        while (got < n)
        {
            int r = await Socket.ReceiveAsync(b.AsMemory(got), SocketFlags.None, cts.Token);
            if (r == 0) throw new EndOfStreamException($"server closed the connection after {got} of {n} bytes");
            got += r;
        }
        return b;
    }

    /// <summary>True when the server closes the connection (end of stream or reset) within the watchdog.</summary>
    public async Task<bool> ServerClosesAsync()
    {
        var b = new byte[4096];
        using var cts = new CancellationTokenSource(Watchdog);
        try
        {
            while (true)
            {
                int r = await Socket.ReceiveAsync(b, SocketFlags.None, cts.Token);
                if (r == 0) return true;
            }
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    // ---- handshake ----

    /// <summary>Reads the greeting; returns the handshake flags.</summary>
    public async Task<ushort> ReadGreetingAsync()
    {
        var g = await ReceiveExactAsync(18);
        Assert.Equal(NbdProtocol.InitMagic, BinaryPrimitives.ReadUInt64BigEndian(g));
        Assert.Equal(NbdProtocol.OptionMagic, BinaryPrimitives.ReadUInt64BigEndian(g.AsSpan(8)));
        return BinaryPrimitives.ReadUInt16BigEndian(g.AsSpan(16));
    }

    public Task SendClientFlagsAsync(uint flags)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, flags);
        return SendAsync(b);
    }

    public Task SendOptionAsync(uint option, ReadOnlySpan<byte> data, ulong magic = NbdProtocol.OptionMagic)
    {
        var b = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(b, magic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), (uint)data.Length);
        data.CopyTo(b.AsSpan(16));
        return SendAsync(b);
    }

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var h = await ReceiveExactAsync(20);
        Assert.Equal(NbdProtocol.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
        uint option = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8));
        uint type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        var data = length == 0 ? [] : await ReceiveExactAsync((int)length);
        return new OptionReply(option, type, data);
    }

    /// <summary>Reads replies to one option up to and including the final one (ACK or an error).</summary>
    public async Task<List<OptionReply>> ReadOptionRepliesAsync()
    {
        var list = new List<OptionReply>();
        while (true)
        {
            var r = await ReadOptionReplyAsync();
            list.Add(r);
            if (r.Type == NbdProtocol.RepAck || (r.Type & NbdProtocol.RepFlagError) != 0) return list;
        }
    }

    public static byte[] InfoData(string name, params ushort[] requests)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var b = new byte[4 + n.Length + 2 + 2 * requests.Length];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)n.Length);
        n.CopyTo(b, 4);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4 + n.Length), (ushort)requests.Length);
        for (int i = 0; i < requests.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6 + n.Length + 2 * i), requests[i]);
        return b;
    }

    public static byte[] MetaData(string export, params string[] queries)
    {
        var ms = new MemoryStream();
        void U32(uint v) { var t = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(t, v); ms.Write(t); }
        var e = Encoding.UTF8.GetBytes(export);
        U32((uint)e.Length);
        ms.Write(e);
        U32((uint)queries.Length);
        foreach (var q in queries)
        {
            var qb = Encoding.UTF8.GetBytes(q);
            U32((uint)qb.Length);
            ms.Write(qb);
        }
        return ms.ToArray();
    }

    /// <summary>
    /// The usual negotiation: greeting, flags (fixed newstyle, no zeros), optionally STRUCTURED_REPLY and
    /// SET_META_CONTEXT, then GO; asserts success.
    /// </summary>
    public async Task NegotiateAsync(string export = "", bool structured = true, params string[] contexts)
    {
        await ReadGreetingAsync();
        await SendClientFlagsAsync(NbdProtocol.ClientFixedNewstyle | NbdProtocol.ClientNoZeroes);
        if (structured)
        {
            await SendOptionAsync(NbdProtocol.OptStructuredReply, []);
            var r = await ReadOptionReplyAsync();
            Assert.Equal(NbdProtocol.RepAck, r.Type);
            Structured = true;
        }
        if (contexts.Length > 0)
        {
            await SendOptionAsync(NbdProtocol.OptSetMetaContext, MetaData(export, contexts));
            foreach (var r in await ReadOptionRepliesAsync())
            {
                if (r.Type == NbdProtocol.RepMetaContext)
                    Contexts[Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4)] = BinaryPrimitives.ReadUInt32BigEndian(r.Data);
                else Assert.Equal(NbdProtocol.RepAck, r.Type);
            }
        }
        await SendOptionAsync(NbdProtocol.OptGo, InfoData(export, NbdProtocol.InfoBlockSize));
        foreach (var r in await ReadOptionRepliesAsync())
        {
            if (r.Type == NbdProtocol.RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == NbdProtocol.InfoExport)
            {
                ExportSize = BinaryPrimitives.ReadUInt64BigEndian(r.Data.AsSpan(2));
                TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(r.Data.AsSpan(10));
            }
            else if (r.Type != NbdProtocol.RepInfo)
            {
                Assert.True(r.Type == NbdProtocol.RepAck, $"GO '{export}' answered 0x{r.Type:x8}: {Encoding.UTF8.GetString(r.Data)}");
            }
        }
    }

    // ---- transmission ----

    public static byte[] RequestHeader(ushort type, ushort flags, ulong handle, ulong offset, uint length, uint magic = NbdProtocol.RequestMagic)
    {
        var b = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), length);
        return b;
    }

    /// <summary>Sends a request (and a WRITE's payload); returns its handle.</summary>
    /// <remarks>With <paramref name="watchdog"/> false the send may block for ever (a test of a server that stops reading ends it by closing the socket).</remarks>
    public async Task<ulong> SendRequestAsync(ushort type, ulong offset, uint length, ReadOnlyMemory<byte> payload = default, ushort flags = 0, bool watchdog = true)
    {
        ulong handle = NextHandle();
        if (type == NbdProtocol.CmdRead) _pendingReads[handle] = length;
        var h = RequestHeader(type, flags, handle, offset, length);
        if (payload.Length == 0)
        {
            await SendAsync(h, watchdog);
        }
        else
        {
            var b = new byte[h.Length + payload.Length];
            h.CopyTo(b, 0);
            payload.CopyTo(b.AsMemory(h.Length));
            await SendAsync(b, watchdog);
        }
        return handle;
    }

    /// <summary>Reads the next complete reply (structured chunks of other handles are kept until theirs completes).</summary>
    public async Task<Reply> ReadReplyAsync()
    {
        while (true)
        {
            var h = await ReceiveExactAsync(4);
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(h);
            if (magic == NbdProtocol.SimpleReplyMagic)
            {
                var rest = await ReceiveExactAsync(12);
                uint error = BinaryPrimitives.ReadUInt32BigEndian(rest);
                ulong handle = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
                byte[]? data = null;
                if (_pendingReads.Remove(handle, out uint len) && error == 0 && len > 0) data = await ReceiveExactAsync((int)len);
                return new Reply(handle, error, data, null, [], Simple: true);
            }
            Assert.Equal(NbdProtocol.StructuredReplyMagic, magic);
            var ch = await ReceiveExactAsync(16);
            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(ch);
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(ch.AsSpan(2));
            ulong hd = BinaryPrimitives.ReadUInt64BigEndian(ch.AsSpan(4));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(ch.AsSpan(12));
            var payload = length == 0 ? [] : await ReceiveExactAsync((int)length);
            if (!_partial.TryGetValue(hd, out var acc))
            {
                uint readLen = _pendingReads.GetValueOrDefault(hd);
                acc = new Reply(hd, 0, readLen > 0 ? new byte[readLen] : null, null, [], Simple: false);
            }
            switch (type)
            {
                case NbdProtocol.ReplyTypeNone:
                    break;
                case NbdProtocol.ReplyTypeOffsetData:
                    acc.Chunks++;
                    acc.DataOffsets.Add(BinaryPrimitives.ReadUInt64BigEndian(payload));
                    acc.ChunkData.Add(payload[8..]);
                    break;
                case NbdProtocol.ReplyTypeBlockStatus:
                    uint ctx = BinaryPrimitives.ReadUInt32BigEndian(payload);
                    for (int i = 4; i < payload.Length; i += 8)
                        acc.Extents.Add((ctx, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 4))));
                    break;
                default:
                    Assert.True((type & 0x8000) != 0, $"unexpected structured reply type {type}");
                    uint err = BinaryPrimitives.ReadUInt32BigEndian(payload);
                    ushort ml = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4));
                    acc = acc with { Error = err, Message = Encoding.UTF8.GetString(payload, 6, ml) };
                    break;
            }
            if ((flags & NbdProtocol.ReplyFlagDone) == 0)
            {
                _partial[hd] = acc;
                continue;
            }
            _partial.Remove(hd);
            uint want = _pendingReads.GetValueOrDefault(hd);
            _pendingReads.Remove(hd);
            if (acc.Data is not null && acc.Error == 0)
            {
                // Offsets are absolute: place each chunk relative to the first byte of the request.
                if (acc.ChunkData.Count > 0)
                {
                    ulong start = acc.DataOffsets.Min();
                    for (int i = 0; i < acc.ChunkData.Count; i++) acc.ChunkData[i].CopyTo(acc.Data, (int)(acc.DataOffsets[i] - start));
                    Assert.Equal(want, (uint)acc.ChunkData.Sum(c => c.Length));
                }
            }
            return acc;
        }
    }

    /// <summary>Sends a request and reads replies until its own arrives (other replies are returned in <paramref name="others"/> if given).</summary>
    public async Task<Reply> RoundTripAsync(ushort type, ulong offset, uint length, ReadOnlyMemory<byte> payload = default, ushort flags = 0)
    {
        ulong handle = await SendRequestAsync(type, offset, length, payload, flags);
        while (true)
        {
            var r = await ReadReplyAsync();
            if (r.Handle == handle) return r;
        }
    }

    public async Task<byte[]> ReadAsync(ulong offset, uint length)
    {
        var r = await RoundTripAsync(NbdProtocol.CmdRead, offset, length);
        Assert.True(r.Error == 0, $"READ {length} at {offset}: error {r.Error} {r.Message}");
        return r.Data ?? [];
    }

    public async Task WriteAsync(ulong offset, byte[] data, ushort flags = 0)
    {
        var r = await RoundTripAsync(NbdProtocol.CmdWrite, offset, (uint)data.Length, data, flags);
        Assert.True(r.Error == 0, $"WRITE {data.Length} at {offset}: error {r.Error} {r.Message}");
    }

    public async Task FlushAsync()
    {
        var r = await RoundTripAsync(NbdProtocol.CmdFlush, 0, 0);
        Assert.True(r.Error == 0, $"FLUSH: error {r.Error} {r.Message}");
    }

    /// <summary>Sends NBD_CMD_DISC and waits for the server to close.</summary>
    public async Task DisconnectAsync()
    {
        await SendAsync(RequestHeader(NbdProtocol.CmdDisc, 0, NextHandle(), 0, 0));
        Assert.True(await ServerClosesAsync(), "the server did not close after DISC");
    }

    public ValueTask DisposeAsync()
    {
        Socket.Dispose();
        return ValueTask.CompletedTask;
    }
}

internal sealed record OptionReply(uint Option, uint Type, byte[] Data)
{
    public string Text => Encoding.UTF8.GetString(Data);
}

internal sealed record Reply(ulong Handle, uint Error, byte[]? Data, string? Message, List<(uint Context, uint Length, uint Flags)> Extents, bool Simple)
{
    public int Chunks { get; set; }
    public List<ulong> DataOffsets { get; } = new();
    public List<byte[]> ChunkData { get; } = new();
}
