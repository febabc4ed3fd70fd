using System.IO.Hashing;
using System.Buffers.Binary;
using Journal.Format;
using Snapshot.Format;

namespace Snapshot.Changes;

/// <summary>
/// The creation marks of one snapshot B: for every persistent snapshot S that existed (valid) when B was created, how
/// many exception entries S's COW file held at that moment (<c>N_S</c>). B is created with I/O quiesced (the store's
/// gate held exclusively, so no copy is in flight) and every COW file appends its entries in commit order, so "S's
/// exception for chunk c was committed before B was created" is exactly "its entry index in S's metadata areas is
/// below <c>N_S</c>".
/// </summary>
/// <remarks>
/// <para>On disk (persistent B): a table in B's own COW file, in the data chunks from chunk 2 (one chunk; two when the
/// chunk is 512 bytes), written and flushed while B is created, before the superblock that names B is committed, and
/// never changed again. The COW header names it (<see cref="CowHeader.MarksChunk"/>, <see cref="CowHeader.MarksCount"/>).</para>
/// <code>
/// offset  size  field
///      0     4  le32 magic         0x6b72614d ("Mark")
///      4     4  le32 count         n, at most 63 (one per other snapshot the store can hold)
///      8     4  le32 crc32c        of (le64 B's snapshot id, then bytes 0 .. 16 + 16n of the table with this field zero)
///     12     4  le32 zero
///     16  16*n  entries            { le64 snapshot id of S, le64 entry count N_S }, ids ascending, each below B's id
/// rest of the reserved chunks: zero
/// </code>
/// <para>The checksum covers B's id, which is not stored in the table, so a table is only ever good in the file of the
/// snapshot it was written for. Everything read back is checked as a create would write it (magic, count against the
/// header, checksum, ids ascending and below B's, zero padding); a table that fails is reported as damaged and a diff
/// that needs it is an error, never a guess.</para>
/// </remarks>
internal sealed class ChangeMarks
{
    /// <summary>"Mark" read as a little-endian 32-bit value.</summary>
    public const uint Magic = 0x6b72614d;

    /// <summary>Most entries: one per other snapshot of a store (64 snapshots at most).</summary>
    public const int MaxEntries = SnapshotStore.MaxSnapshots - 1;

    /// <summary>Bytes of the table header.</summary>
    public const int HeaderBytes = 16;

    /// <summary>Bytes of one entry.</summary>
    public const int EntryBytes = 16;

    /// <summary>Bytes of the largest table (1024).</summary>
    public const int MaxBytes = HeaderBytes + MaxEntries * EntryBytes;

    private readonly Dictionary<ulong, long> _counts;

    public ChangeMarks(ulong ownerId, IReadOnlyList<(ulong SnapshotId, long Entries)> entries)
    {
        OwnerId = ownerId;
        Entries = entries;
        _counts = entries.ToDictionary(e => e.SnapshotId, e => e.Entries);
    }

    /// <summary>The snapshot (B) whose creation these marks record.</summary>
    public ulong OwnerId { get; }

    /// <summary>The entries, snapshot ids ascending.</summary>
    public IReadOnlyList<(ulong SnapshotId, long Entries)> Entries { get; }

    /// <summary>Chunks the table takes for a chunk size (enough for <see cref="MaxBytes"/>).</summary>
    public static int ChunksFor(int chunkSectors) => (int)((MaxBytes + (long)chunkSectors * 512 - 1) / ((long)chunkSectors * 512));

    /// <summary>The entry count recorded for snapshot <paramref name="snapshotId"/>, or null when it is not listed.</summary>
    public long? CountOf(ulong snapshotId) => _counts.TryGetValue(snapshotId, out long n) ? n : null;

    /// <summary>Encodes the table into <paramref name="dst"/> (whole reserved chunks; the rest is zeroed).</summary>
    public void Write(Span<byte> dst)
    {
        if (Entries.Count > MaxEntries) throw new InvalidOperationException($"creation marks: {Entries.Count} entries, at most {MaxEntries}");
        dst.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(dst, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], (uint)Entries.Count);
        for (int i = 0; i < Entries.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(dst[(HeaderBytes + i * EntryBytes)..], Entries[i].SnapshotId);
            BinaryPrimitives.WriteUInt64LittleEndian(dst[(HeaderBytes + i * EntryBytes + 8)..], (ulong)Entries[i].Entries);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Checksum(OwnerId, dst[..(HeaderBytes + Entries.Count * EntryBytes)]));
    }

    /// <summary>CRC-32C of the owner's id followed by the table with its checksum field taken as zero.</summary>
    private static uint Checksum(ulong ownerId, ReadOnlySpan<byte> table)
    {
        var crc = new Crc32(Crc32ParameterSet.Crc32C);
        Span<byte> id = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(id, ownerId);
        crc.Append(id);
        crc.Append(table[..8]);
        crc.Append([0, 0, 0, 0]);   // the checksum field (table bytes 8..11) taken as zero
        crc.Append(table[12..]);
        return crc.GetCurrentHashAsUInt32();
    }

    /// <summary>
    /// Parses and checks a table read back from the reserved chunks (owner <paramref name="ownerId"/>, whose header says <paramref name="headerCount"/> entries).
    /// Returns the marks, or null with the problem in <paramref name="problem"/>.
    /// </summary>
    public static ChangeMarks? TryRead(ReadOnlySpan<byte> src, ulong ownerId, uint headerCount, out string? problem)
    {
        problem = null;
        if (src.Length < MaxBytes)
        {
            problem = $"creation-marks table is {src.Length} bytes, expected at least {MaxBytes}";
            return null;
        }
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(src);
        if (magic != Magic)
        {
            problem = $"creation-marks table: magic 0x{magic:x8}, expected 0x{Magic:x8} (\"Mark\")";
            return null;
        }
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(src[4..]);
        if (count > MaxEntries || count != headerCount)
        {
            problem = $"creation-marks table: {count} entries, the COW header says {headerCount} (at most {MaxEntries})";
            return null;
        }
        int used = HeaderBytes + (int)count * EntryBytes;
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(src[8..]);
        uint actual = Checksum(ownerId, src[..used]);
        if (crc != actual)
        {
            problem = $"creation-marks table: checksum mismatch: stored 0x{crc:x8}, computed 0x{actual:x8}";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(src[12..]) != 0 || src[used..].IndexOfAnyExcept((byte)0) >= 0)
        {
            problem = "creation-marks table: bytes after the entries are not zero";
            return null;
        }
        var entries = new List<(ulong, long)>((int)count);
        ulong previous = 0;
        for (int i = 0; i < count; i++)
        {
            ulong id = BinaryPrimitives.ReadUInt64LittleEndian(src[(HeaderBytes + i * EntryBytes)..]);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(src[(HeaderBytes + i * EntryBytes + 8)..]);
            if (id == 0 || id <= previous || id >= ownerId)
            {
                problem = $"creation-marks table: entry {i} names snapshot id {id}: ids must ascend and lie below the owner's ({ownerId})";
                return null;
            }
            if (n > long.MaxValue / 2)
            {
                problem = $"creation-marks table: entry {i} (snapshot id {id}) has {n} entries";
                return null;
            }
            entries.Add((id, (long)n));
            previous = id;
        }
        return new ChangeMarks(ownerId, entries);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"ChangeMarks(of snapshot {OwnerId}: {string.Join(", ", Entries.Select(e => $"{e.SnapshotId}={e.Entries}"))})";
}
