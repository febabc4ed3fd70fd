using System.Buffers.Binary;
using System.Globalization;

namespace Journal.Format;

/// <summary>
/// Encoding and checking of whole records: cycle stamping, displaced words, CRC, op parsing. Pure functions over
/// buffers; the writer and the reader share them so the two cannot disagree.
/// </summary>
internal static class RecordCodec
{
    /// <summary>
    /// Turns a filled record buffer into its on-disk form. <paramref name="record"/> is the header block followed by
    /// the payload blocks holding <c>header.Length</c> logical payload bytes. Zeroes the slack of the last payload
    /// block, moves the first word of each payload block into the header and stamps the cycle there, then writes the
    /// header with its CRC. Returns the number of blocks to write.
    /// </summary>
    public static int Seal(Span<byte> record, ref RecordHeader header)
    {
        int payloadBlocks = header.PayloadBlocks;
        if (payloadBlocks > LogFormat.MaxPayloadBlocks) throw new ArgumentOutOfRangeException(nameof(header), "record payload too long");
        int blocks = 1 + payloadBlocks;
        var payload = record.Slice(LogFormat.BlockSize, payloadBlocks * LogFormat.BlockSize);
        payload[(int)header.Length..].Clear();
        header.Displaced = default;
        for (int i = 0; i < payloadBlocks; i++)
        {
            var b = payload.Slice(i * LogFormat.BlockSize, 4);
            header.Displaced[i] = BinaryPrimitives.ReadUInt32LittleEndian(b);
            BinaryPrimitives.WriteUInt32LittleEndian(b, header.Cycle);
        }
        header.Crc = 0;
        header.ReservedNonZero = false;
        header.Write(record);
        header.Crc = ComputeCrc(record[..(blocks * LogFormat.BlockSize)]);
        BinaryPrimitives.WriteUInt32LittleEndian(record[RecordHeader.CrcOffset..], header.Crc);
        return blocks;
    }

    /// <summary>The CRC of a stored record: its header block with the CRC field taken as zero, then its payload blocks.</summary>
    public static uint ComputeCrc(ReadOnlySpan<byte> record) => Crc32C.ComputeWithZeroedWord(record, RecordHeader.CrcOffset);

    /// <summary>Puts the displaced words back into the payload blocks (after the CRC has been checked).</summary>
    public static void Unstamp(Span<byte> payload, in RecordHeader header)
    {
        int payloadBlocks = payload.Length / LogFormat.BlockSize;
        for (int i = 0; i < payloadBlocks; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(payload[(i * LogFormat.BlockSize)..], header.Displaced[i]);
    }

    /// <summary>The cycle a block was written in: the word at offset 4 of a header block, the first word of any other.</summary>
    public static uint BlockCycle(ReadOnlySpan<byte> block)
    {
        uint w0 = BinaryPrimitives.ReadUInt32LittleEndian(block);
        return w0 == LogFormat.RecordMagic ? BinaryPrimitives.ReadUInt32LittleEndian(block[4..]) : w0;
    }

    /// <summary>True when the block starts with the record magic.</summary>
    public static bool IsHeaderBlock(ReadOnlySpan<byte> block) =>
        BinaryPrimitives.ReadUInt32LittleEndian(block) == LogFormat.RecordMagic;

    /// <summary>
    /// Checks the fields of a header read at log position <paramref name="expected"/> of a log of
    /// <paramref name="logBlocks"/> blocks (everything but the CRC and the payload). Null when sound.
    /// </summary>
    public static RecordProblem? CheckHeader(in RecordHeader h, Lsn expected, uint logBlocks)
    {
        if (h.Magic != LogFormat.RecordMagic)
            return new("bad record magic", Hex(LogFormat.RecordMagic), Hex(h.Magic));
        if (h.Version != LogFormat.Version)
            return new("unsupported record version", LogFormat.Version.ToString(CultureInfo.InvariantCulture), h.Version.ToString(CultureInfo.InvariantCulture));
        if (h.Kind is not (RecordKind.Data or RecordKind.Unmount or RecordKind.Pad))
            return new("unknown record kind", "1, 2 or 3", ((ushort)h.Kind).ToString(CultureInfo.InvariantCulture));
        if (h.Cycle != expected.Cycle)
            return new("record cycle does not match its position", expected.Cycle.ToString(CultureInfo.InvariantCulture), h.Cycle.ToString(CultureInfo.InvariantCulture));
        if (h.Lsn != expected)
            return new("record LSN does not match its position", expected.ToString(), h.Lsn.ToString());
        if (h.LogBlocks != logBlocks)
            return new("record was written for a log of another size", logBlocks.ToString(CultureInfo.InvariantCulture), h.LogBlocks.ToString(CultureInfo.InvariantCulture));
        if (h.Length > LogFormat.MaxPayloadBytes)
            return new("record length too large", "<= " + LogFormat.MaxPayloadBytes.ToString(CultureInfo.InvariantCulture), h.Length.ToString(CultureInfo.InvariantCulture));
        if (expected.Block + (uint)h.RecordBlocks > logBlocks)
            return new("record runs past the end of the log", "<= " + logBlocks.ToString(CultureInfo.InvariantCulture), (expected.Block + (uint)h.RecordBlocks).ToString(CultureInfo.InvariantCulture));
        if (h.ReservedNonZero || !h.UnusedDisplacedAreZero())
            return new("reserved header bytes are not zero");
        if (h.Kind != RecordKind.Data && h.OpCount != 0)
            return new("record of this kind carries ops", "0", h.OpCount.ToString(CultureInfo.InvariantCulture));
        if (h.Kind == RecordKind.Unmount && h.Length != 0)
            return new("unmount record has a payload", "0", h.Length.ToString(CultureInfo.InvariantCulture));
        if (h.TailLsn > h.Lsn || h.TailLsn.Block >= logBlocks || h.TailLsn.Cycle == 0) // cycles start at 1
            return new("record tail LSN out of range", "<= " + h.Lsn, h.TailLsn.ToString());
        if (h.DurableLsn >= h.Lsn || (!h.DurableLsn.IsZero && h.DurableLsn.Block >= logBlocks))
            return new("record durable LSN out of range", "< " + h.Lsn, h.DurableLsn.ToString());
        if (h.PreviousBlock != LogFormat.NoPreviousBlock && h.PreviousBlock >= logBlocks)
            return new("previous-record block out of range", "< " + logBlocks.ToString(CultureInfo.InvariantCulture), h.PreviousBlock.ToString(CultureInfo.InvariantCulture));
        return null;
    }

    /// <summary>
    /// Checks the stored form of a record whose header passed <see cref="CheckHeader"/>: every payload block carries
    /// the record's cycle and the CRC matches. Null when sound.
    /// </summary>
    public static RecordProblem? CheckStored(ReadOnlySpan<byte> record, in RecordHeader h)
    {
        int payloadBlocks = h.PayloadBlocks;
        for (int i = 0; i < payloadBlocks; i++)
        {
            uint stamp = BinaryPrimitives.ReadUInt32LittleEndian(record[((1 + i) * LogFormat.BlockSize)..]);
            if (stamp != h.Cycle)
                return new($"payload block {i + 1} of the record carries another cycle (torn or missing write)",
                    h.Cycle.ToString(CultureInfo.InvariantCulture), stamp.ToString(CultureInfo.InvariantCulture));
        }
        uint crc = ComputeCrc(record[..((1 + payloadBlocks) * LogFormat.BlockSize)]);
        if (crc != h.Crc) return new("record CRC mismatch", Hex(h.Crc), Hex(crc));
        return null;
    }

    /// <summary>
    /// Splits an unstamped payload into its ops, checking that they exactly fill <c>header.Length</c>, that their count
    /// matches and that every op header is well formed. Null when sound.
    /// </summary>
    public static RecordProblem? ParseOps(ReadOnlyMemory<byte> payload, in RecordHeader h, List<(OpHeader Header, ReadOnlyMemory<byte> Data)> ops)
    {
        var span = payload.Span;
        int off = 0, len = (int)h.Length;
        while (off < len)
        {
            if (len - off < OpHeader.Size)
                return new("op header runs past the record payload", $"{OpHeader.Size} bytes", $"{len - off} bytes");
            var op = OpHeader.Read(span[off..]);
            off += OpHeader.Size;
            if (op.Length > (uint)(len - off))
                return new("op data runs past the record payload", $"<= {len - off}", op.Length.ToString(CultureInfo.InvariantCulture));
            if (op.ClientId != LogClientId.Transaction || op.Reserved != 0)
                return new("op header has an unknown client id or nonzero reserved bytes", "client 0x69", Hex(op.ClientId, op.Reserved));
            var problem = CheckOpFlags(op);
            if (problem is not null) return problem;
            ops.Add((op, payload.Slice(off, (int)op.Length)));
            off += (int)op.Length;
        }
        if (ops.Count != h.OpCount)
            return new("op count does not match the ops in the payload", h.OpCount.ToString(CultureInfo.InvariantCulture), ops.Count.ToString(CultureInfo.InvariantCulture));
        return null;
    }

    private static RecordProblem? CheckOpFlags(in OpHeader op)
    {
        var f = op.Flags;
        bool ok = f switch
        {
            OpFlags.Start or OpFlags.Commit => op.Length == 0,
            OpFlags.None or OpFlags.Continue or (OpFlags.WasContinued | OpFlags.Continue) or (OpFlags.WasContinued | OpFlags.End) => true,
            _ => false,
        };
        return ok ? null : new("op has an impossible flag combination or a start/commit op carries data",
            "START, COMMIT, -, CONT, CONT|WAS_CONT or WAS_CONT|END", $"{OpHeader.FlagsText(f)} len={op.Length}");
    }

    private static string Hex(uint v) => "0x" + v.ToString("x8", CultureInfo.InvariantCulture);

    private static string Hex(LogClientId c, ushort reserved) =>
        string.Create(CultureInfo.InvariantCulture, $"client 0x{(byte)c:x2} reserved {reserved}");
}

/// <summary>What is wrong with a record: the problem and, when there are, the expected and found values.</summary>
internal sealed record RecordProblem(string Problem, string? Expected = null, string? Actual = null)
{
    /// <summary>The corruption error for this problem in the record at <paramref name="lsn"/> of log <paramref name="file"/>.</summary>
    public Recovery.CorruptionException ToException(string file, Lsn lsn) =>
        new(file, lsn.Block, lsn, Problem, Expected, Actual);
}
