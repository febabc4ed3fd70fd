using System.Buffers.Binary;
using System.Text;

namespace Snapshot.Nbd;

/// <summary>
/// The fixed newstyle handshake and option haggling of one connection.
/// </summary>
/// <remarks>
/// <para>Rules (cited by number in the code):</para>
/// <list type="number">
/// <item>The server greets with NBDMAGIC, IHAVEOPT and the handshake flags FIXED_NEWSTYLE | NO_ZEROES.</item>
/// <item>Client flags other than FIXED_NEWSTYLE and NO_ZEROES close the connection (the protocol says MUST).</item>
/// <item>An option header without the IHAVEOPT magic, a short handshake (the client closes mid-way), or option data
/// larger than 64 KiB close the connection: the stream can no longer be trusted.</item>
/// <item>EXPORT_NAME cannot be answered with an error: an unknown export closes the connection; otherwise the export's
/// size and transmission flags (and 124 zeros unless the client asked for NO_ZEROES) start transmission.</item>
/// <item>INFO and GO answer NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_DESCRIPTION and NBD_INFO_BLOCK_SIZE (minimum 512,
/// preferred the chunk size, maximum 32 MiB) whatever the client asked for, then ACK; an unknown or unusable export
/// gets NBD_REP_ERR_UNKNOWN with the reason; malformed data gets NBD_REP_ERR_INVALID. GO's ACK starts transmission.</item>
/// <item>LIST answers one NBD_REP_SERVER per export (name and description), read live from the store, then ACK.</item>
/// <item>STRUCTURED_REPLY is accepted (ACK). LIST_META_CONTEXT and SET_META_CONTEXT need it first (else
/// NBD_REP_ERR_INVALID); their queries follow <see cref="NbdMetaContexts"/> (a dirty bitmap of a snapshot the export
/// cannot list changes from gets NBD_REP_ERR_INVALID with the reason); SET replaces the selection.</item>
/// <item>ABORT gets ACK and closes. Any other option (STARTTLS, EXTENDED_HEADERS, ...) gets NBD_REP_ERR_UNSUP and
/// the negotiation goes on.</item>
/// </list>
/// </remarks>
internal sealed class NbdHandshake
{
    private readonly NbdConnection _c;

    public NbdHandshake(NbdConnection connection) => _c = connection;

    private NbdSession Session => _c.Session;

    /// <summary>
    /// Runs the negotiation. Returns null when transmission starts (the session holds the export), or the reason the
    /// connection ends.
    /// </summary>
    public async Task<string?> RunAsync(CancellationToken ct)
    {
        // Rule 1.
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdProtocol.InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes);
        await _c.SendAsync(greeting, ct).ConfigureAwait(false);

        var four = new byte[4];
        if (await _c.ReceiveAsync(four, ct).ConfigureAwait(false) < 4) return Fail("client closed the connection before sending its flags");
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(four);
        if ((clientFlags & ~(NbdProtocol.ClientFixedNewstyle | NbdProtocol.ClientNoZeroes)) != 0) // Rule 2.
            return Fail($"unknown client flags 0x{clientFlags:x8}");
        Session.NoZeroes = (clientFlags & NbdProtocol.ClientNoZeroes) != 0;

        var header = new byte[NbdProtocol.OptionHeaderBytes];
        while (true)
        {
            int got = await _c.ReceiveAsync(header, ct).ConfigureAwait(false);
            if (got == 0) return "client ended the negotiation without choosing an export";
            if (got < header.Length) return Fail("short option header: the client closed the connection"); // Rule 3.
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (magic != NbdProtocol.OptionMagic) return Fail($"bad option magic 0x{magic:x16}"); // Rule 3.
            if (length > NbdProtocol.MaxOptionBytes) return Fail($"{NbdProtocol.OptionName(option)} carries {length} bytes of data, more than {NbdProtocol.MaxOptionBytes}");
            var data = new byte[length];
            if (await _c.ReceiveAsync(data, ct).ConfigureAwait(false) < length) return Fail("short option data: the client closed the connection");

            switch (option)
            {
                case NbdProtocol.OptExportName:
                    return await ExportNameAsync(data, ct).ConfigureAwait(false);
                case NbdProtocol.OptAbort: // Rule 8.
                    try
                    {
                        await ReplyAsync(option, NbdProtocol.RepAck, ReadOnlyMemory<byte>.Empty, ct).ConfigureAwait(false);
                    }
                    catch (Exception e) when (NbdConnection.IsConnectionError(e))
                    {
                        // The protocol lets a client close right after ABORT without waiting for the reply.
                    }
                    return "client aborted the negotiation";
                case NbdProtocol.OptList:
                    await ListAsync(option, data, ct).ConfigureAwait(false);
                    break;
                case NbdProtocol.OptInfo:
                case NbdProtocol.OptGo:
                    if (await InfoAsync(option, data, ct).ConfigureAwait(false) && option == NbdProtocol.OptGo) return null;
                    break;
                case NbdProtocol.OptStructuredReply: // Rule 7.
                    if (length != 0)
                    {
                        await ErrorAsync(option, NbdProtocol.RepErrInvalid, "STRUCTURED_REPLY takes no data", ct).ConfigureAwait(false);
                        break;
                    }
                    Session.Structured = true;
                    await ReplyAsync(option, NbdProtocol.RepAck, ReadOnlyMemory<byte>.Empty, ct).ConfigureAwait(false);
                    break;
                case NbdProtocol.OptListMetaContext:
                case NbdProtocol.OptSetMetaContext:
                    await MetaContextAsync(option, data, ct).ConfigureAwait(false);
                    break;
                default: // Rule 8.
                    // Counted with the connection's errors: a client repeating options it is refused logs 10 lines, not one a time.
                    if (_c.CountError()) NbdLog.OptionUnsupported(_c.Log, _c.Id, NbdProtocol.OptionName(option));
                    await ReplyAsync(option, NbdProtocol.RepErrUnsup, Encoding.UTF8.GetBytes($"{NbdProtocol.OptionName(option)} is not supported"), ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    private string Fail(string reason)
    {
        NbdLog.HandshakeFailed(_c.Log, _c.Id, reason);
        return $"handshake failed: {reason}";
    }

    // Rule 4.
    private async Task<string?> ExportNameAsync(byte[] data, CancellationToken ct)
    {
        string name = Encoding.UTF8.GetString(data);
        var export = _c.Server.Registry.Resolve(name, out string? error);
        if (export is null || !_c.Server.Registry.TryOpen(export, _c))
            return Fail($"EXPORT_NAME '{NbdLogText.Client(name)}': {error ?? "export is being deleted or merged"} (EXPORT_NAME cannot be refused with a reply)");
        if (!_c.Server.TryEndNegotiation(_c))
        {
            _c.Server.Registry.Close(export, _c);
            return Fail("closed to make room for a new connection before the export was given");
        }
        Session.Export = export;
        Session.TransmissionFlags = Session.FlagsFor(export);
        if (Session.MetaExport != export.Name) Session.Contexts.Clear();
        var reply = new byte[Session.NoZeroes ? 10 : 134];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), Session.TransmissionFlags);
        await _c.SendAsync(reply, ct).ConfigureAwait(false);
        LogNegotiated(export);
        return null;
    }

    // Rule 6.
    private async Task ListAsync(uint option, byte[] data, CancellationToken ct)
    {
        if (data.Length != 0)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "LIST takes no data", ct).ConfigureAwait(false);
            return;
        }
        foreach (var (name, description) in _c.Server.Registry.List())
        {
            byte[] n = Encoding.UTF8.GetBytes(name), d = Encoding.UTF8.GetBytes(description);
            var payload = new byte[4 + n.Length + d.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)n.Length);
            n.CopyTo(payload, 4);
            d.CopyTo(payload, 4 + n.Length);
            await ReplyAsync(option, NbdProtocol.RepServer, payload, ct).ConfigureAwait(false);
        }
        await ReplyAsync(option, NbdProtocol.RepAck, ReadOnlyMemory<byte>.Empty, ct).ConfigureAwait(false);
    }

    // Rule 5. Returns true when the export was accepted (for GO: transmission starts).
    private async Task<bool> InfoAsync(uint option, byte[] data, CancellationToken ct)
    {
        var d = data.AsSpan();
        if (d.Length < 6)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, $"{NbdProtocol.OptionName(option)} data of {d.Length} bytes is too short", ct).ConfigureAwait(false);
            return false;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(d);
        if (nameLength > d.Length - 6)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, $"export name length {nameLength} does not fit the option data", ct).ConfigureAwait(false);
            return false;
        }
        string name = Encoding.UTF8.GetString(d.Slice(4, (int)nameLength));
        int requests = BinaryPrimitives.ReadUInt16BigEndian(d[(4 + (int)nameLength)..]);
        if (d.Length != 6 + nameLength + 2 * requests)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, $"{requests} information requests do not match the option data", ct).ConfigureAwait(false);
            return false;
        }
        var export = _c.Server.Registry.Resolve(name, out string? error);
        if (export is null)
        {
            await ErrorAsync(option, NbdProtocol.RepErrUnknown, error!, ct).ConfigureAwait(false);
            return false;
        }
        if (option == NbdProtocol.OptGo && !_c.Server.Registry.TryOpen(export, _c))
        {
            await ErrorAsync(option, NbdProtocol.RepErrUnknown, $"export '{export.Name}' is being deleted or merged", ct).ConfigureAwait(false);
            return false;
        }
        if (option == NbdProtocol.OptGo && !_c.Server.TryEndNegotiation(_c))
        {
            _c.Server.Registry.Close(export, _c);
            return false; // closed to make room: the socket is gone, and the next read ends the handshake
        }
        ushort flags = Session.FlagsFor(export);
        try
        {
            var info = new byte[12];
            BinaryPrimitives.WriteUInt16BigEndian(info, NbdProtocol.InfoExport);
            BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.SizeBytes);
            BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), flags);
            await ReplyAsync(option, NbdProtocol.RepInfo, info, ct).ConfigureAwait(false);
            await ReplyAsync(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoName, export.Name), ct).ConfigureAwait(false);
            await ReplyAsync(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoDescription, export.Description), ct).ConfigureAwait(false);
            var sizes = new byte[14];
            BinaryPrimitives.WriteUInt16BigEndian(sizes, NbdProtocol.InfoBlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 512);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)export.PreferredBlockBytes);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), NbdServerOptions.MaxRequestBytes);
            await ReplyAsync(option, NbdProtocol.RepInfo, sizes, ct).ConfigureAwait(false);
            await ReplyAsync(option, NbdProtocol.RepAck, ReadOnlyMemory<byte>.Empty, ct).ConfigureAwait(false);
        }
        catch
        {
            if (option == NbdProtocol.OptGo) _c.Server.Registry.Close(export, _c);
            throw;
        }
        if (option == NbdProtocol.OptGo)
        {
            Session.Export = export;
            Session.TransmissionFlags = flags;
            if (Session.MetaExport != export.Name) Session.Contexts.Clear();
            LogNegotiated(export);
        }
        return true;
    }

    private static byte[] InfoString(ushort type, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        int n = Math.Min(bytes.Length, NbdProtocol.MaxStringBytes);
        var b = new byte[2 + n];
        BinaryPrimitives.WriteUInt16BigEndian(b, type);
        bytes.AsSpan(0, n).CopyTo(b.AsSpan(2));
        return b;
    }

    // Rule 7.
    private async Task MetaContextAsync(uint option, byte[] data, CancellationToken ct)
    {
        bool list = option == NbdProtocol.OptListMetaContext;
        if (!list) Session.Contexts.Clear(); // SET replaces the selection, also when it fails.
        if (!Session.Structured)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "negotiate STRUCTURED_REPLY first", ct).ConfigureAwait(false);
            return;
        }
        var d = data.AsSpan();
        if (!TryParseQueries(d, out string? exportName, out List<string>? queries, out string? why))
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, why!, ct).ConfigureAwait(false);
            return;
        }
        var export = _c.Server.Registry.Resolve(exportName!, out string? error);
        if (export is null)
        {
            await ErrorAsync(option, NbdProtocol.RepErrUnknown, error!, ct).ConfigureAwait(false);
            return;
        }
        foreach (var q in queries!)
        {
            if (!NbdMetaContexts.IsWellFormed(q))
            {
                await ErrorAsync(option, NbdProtocol.RepErrInvalid, $"query '{NbdLogText.Client(q)}' has no namespace (namespace:leaf)", ct).ConfigureAwait(false);
                return;
            }
        }
        var available = NbdMetaContexts.For(export.Volume);
        var chosen = new List<INbdMetaContext>();
        if (queries.Count == 0)
        {
            if (list) chosen.AddRange(available);
        }
        else
        {
            foreach (var q in queries)
            {
                bool any = false;
                foreach (var c in NbdMetaContexts.Match(available, q, list))
                {
                    any = true;
                    if (!chosen.Contains(c)) chosen.Add(c);
                }
                // A dirty bitmap of a snapshot that exists but cannot be served on this export: an error reply, not
                // silence (changed-block tracking).
                if (!any && NbdMetaContexts.WhyNot(export.Volume, q) is { } refused)
                {
                    await ErrorAsync(option, NbdProtocol.RepErrInvalid, refused, ct).ConfigureAwait(false);
                    return;
                }
            }
        }
        if (!list) Session.MetaExport = export.Name;
        uint id = 0;
        foreach (var c in chosen)
        {
            uint contextId = list ? 0 : ++id;
            if (!list) Session.Contexts.Add((contextId, c));
            var name = Encoding.UTF8.GetBytes(c.Name);
            var payload = new byte[4 + name.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, contextId);
            name.CopyTo(payload, 4);
            await ReplyAsync(option, NbdProtocol.RepMetaContext, payload, ct).ConfigureAwait(false);
        }
        await ReplyAsync(option, NbdProtocol.RepAck, ReadOnlyMemory<byte>.Empty, ct).ConfigureAwait(false);
    }

    private static bool TryParseQueries(ReadOnlySpan<byte> d, out string? exportName, out List<string>? queries, out string? why)
    {
        exportName = null;
        queries = null;
        why = null;
        if (d.Length < 8)
        {
            why = $"meta context data of {d.Length} bytes is too short";
            return false;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(d);
        if (nameLength > d.Length - 8)
        {
            why = $"export name length {nameLength} does not fit the option data";
            return false;
        }
        exportName = Encoding.UTF8.GetString(d.Slice(4, (int)nameLength));
        int at = 4 + (int)nameLength;
        uint count = BinaryPrimitives.ReadUInt32BigEndian(d[at..]);
        at += 4;
        queries = new List<string>();
        for (uint i = 0; i < count; i++)
        {
            if (d.Length - at < 4)
            {
                why = $"query {i} of {count} does not fit the option data";
                return false;
            }
            uint qLength = BinaryPrimitives.ReadUInt32BigEndian(d[at..]);
            at += 4;
            if (qLength > d.Length - at)
            {
                why = $"query {i} length {qLength} does not fit the option data";
                return false;
            }
            queries.Add(Encoding.UTF8.GetString(d.Slice(at, (int)qLength)));
            at += (int)qLength;
        }
        if (at != d.Length)
        {
            why = $"{d.Length - at} bytes left over after {count} queries";
            return false;
        }
        return true;
    }

    private void LogNegotiated(NbdExport export)
    {
        string contexts = Session.Contexts.Count == 0 ? "" : ", contexts " + string.Join(", ", Session.Contexts.Select(c => c.Context.Name));
        NbdLog.Negotiated(_c.Log, _c.Id, export.Name, export.SizeBytes, export.ReadOnly ? ", read-only" : "",
            Session.Structured ? "structured" : "simple", contexts);
    }

    private async Task ErrorAsync(uint option, uint reply, string message, CancellationToken ct)
    {
        string replyName = reply switch
        {
            NbdProtocol.RepErrInvalid => "NBD_REP_ERR_INVALID",
            NbdProtocol.RepErrUnknown => "NBD_REP_ERR_UNKNOWN",
            NbdProtocol.RepErrUnsup => "NBD_REP_ERR_UNSUP",
            _ => $"reply 0x{reply:x8}",
        };
        if (_c.CountError()) NbdLog.OptionRefused(_c.Log, _c.Id, NbdProtocol.OptionName(option), replyName, message);
        var bytes = Encoding.UTF8.GetBytes(message);
        await ReplyAsync(option, reply, bytes.AsMemory(0, Math.Min(bytes.Length, NbdProtocol.MaxStringBytes)), ct).ConfigureAwait(false);
    }

    private async Task ReplyAsync(uint option, uint type, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var b = new byte[NbdProtocol.OptionReplyHeaderBytes + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(b, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), (uint)payload.Length);
        payload.CopyTo(b.AsMemory(NbdProtocol.OptionReplyHeaderBytes));
        await _c.SendAsync(b, ct).ConfigureAwait(false);
    }
}
