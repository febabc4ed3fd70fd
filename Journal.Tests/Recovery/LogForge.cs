using System.Buffers.Binary;
using Journal.Format;

namespace Journal.Tests.Recovery;

/// <summary>
/// Changes bytes inside a record of a log image and seals the record again with a correct CRC, as a writer bug would
/// leave it: the log's own checks (CRC, stamps, ops) pass, and only the checkpoint's consistency checks can catch it.
/// </summary>
internal static class LogForge
{
    /// <summary>
    /// Rewrites the record at <paramref name="lsn"/> of the log that starts at sector <paramref name="startSector"/> of
    /// <paramref name="image"/> and has <paramref name="logBlocks"/> blocks: <paramref name="patch"/> gets the record's
    /// logical payload (op headers and data, the displaced words put back) and may change bytes in place; the record is
    /// then stamped and sealed again.
    /// </summary>
    public static void PatchRecord(byte[] image, long startSector, uint logBlocks, Lsn lsn, PayloadPatch patch)
    {
        int at = (int)((startSector + lsn.Block) * LogFormat.BlockSize);
        var h = RecordHeader.Read(image.AsSpan(at, LogFormat.BlockSize));
        if (h.Magic != LogFormat.RecordMagic || h.Lsn != lsn) throw new InvalidOperationException($"no record at {lsn}");
        int blocks = h.RecordBlocks;
        if (lsn.Block + blocks > logBlocks) throw new InvalidOperationException($"record {lsn} runs past the end of the log");
        var record = image.AsSpan(at, blocks * LogFormat.BlockSize);
        var payload = record[LogFormat.BlockSize..];
        RecordCodec.Unstamp(payload, h);
        patch(payload[..(int)h.Length]);
        RecordCodec.Seal(record, ref h);
    }

    /// <summary>A change of a record's logical payload.</summary>
    public delegate void PayloadPatch(Span<byte> payload);

    /// <summary>
    /// The offsets, in a record's logical payload, of the data of every op that carries data (of transaction
    /// <paramref name="transactionId"/> when given), in order (for a record that holds a whole small checkpoint: the
    /// checkpoint header, then each item header and region).
    /// </summary>
    public static List<(int Offset, int Length)> OpData(ReadOnlySpan<byte> payload, uint? transactionId = null)
    {
        var list = new List<(int, int)>();
        int pos = 0;
        while (pos + OpHeader.Size <= payload.Length)
        {
            uint tid = BinaryPrimitives.ReadUInt32LittleEndian(payload[pos..]);
            int len = (int)BinaryPrimitives.ReadUInt32LittleEndian(payload[(pos + 4)..]);
            if (len > 0 && (transactionId is null || tid == transactionId)) list.Add((pos + OpHeader.Size, len));
            pos += OpHeader.Size + len;
        }
        return list;
    }

    /// <summary>Offset in the payload of the checkpoint header (the first op data starting with its magic); -1 if none.</summary>
    public static int CheckpointHeaderOffset(ReadOnlySpan<byte> payload)
    {
        foreach (var (off, len) in OpData(payload))
            if (len == CheckpointHeader.Size && BinaryPrimitives.ReadUInt32LittleEndian(payload[off..]) == CheckpointHeader.MagicValue) return off;
        return -1;
    }
}
