using System.Buffers.Binary;
using System.Text;

namespace Snapshot.Format;

/// <summary>Kind of snapshot as recorded in the superblock.</summary>
internal enum SnapshotKindCode : uint
{
    Persistent = 1,
    Transient = 2,
}

/// <summary>State of a snapshot as recorded in the superblock.</summary>
internal enum SnapshotStateCode : uint
{
    Valid = 1,
    Invalid = 2,
    /// <summary>Valid, and being merged into the origin (a merge was started and has not finished).</summary>
    Merging = 3,
}

/// <summary>Why a snapshot was invalidated.</summary>
internal enum InvalidReasonCode : uint
{
    None = 0,
    CowFull = 1,
    IoError = 2,
    TransientLost = 3,
    HeaderInvalid = 4,
    /// <summary>The journal was reset (<c>jreplay zero-log</c>) and may have held exceptions of the snapshot not yet home.</summary>
    LogReset = 5,
}

/// <summary>
/// One snapshot in the superblock: 96 bytes.
/// <code>
/// offset size field
///      0    8 le64 id             unique within the store, never reused
///      8    8 le64 cow_sectors    configured COW size (total_sectors in status)
///     16    4 le32 kind           1 persistent, 2 transient
///     20    4 le32 state          1 valid, 2 invalid, 3 merging (valid, a merge into the origin is unfinished)
///     24    4 le32 name_length    bytes of UTF-8, 1..64
///     28    4 le32 reason         why invalid: 0 none, 1 COW full, 2 I/O error, 3 transient lost at close, 4 header says invalid, 5 journal reset
///     32   64 name                UTF-8, zero padded
/// </code>
/// </summary>
internal readonly record struct SnapshotRecord(ulong Id, long CowSectors, SnapshotKindCode Kind, SnapshotStateCode State, InvalidReasonCode Reason, string Name)
{
    /// <summary>Bytes on disk.</summary>
    public const int Size = 96;

    /// <summary>Most bytes of UTF-8 in a snapshot name.</summary>
    public const int MaxNameBytes = 64;

    public void Write(Span<byte> dst)
    {
        dst[..Size].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(dst, Id);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], CowSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)Kind);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], (uint)State);
        int n = Encoding.UTF8.GetBytes(Name, dst.Slice(32, MaxNameBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(dst[24..], (uint)n);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[28..], (uint)Reason);
    }

    public static SnapshotRecord Read(ReadOnlySpan<byte> src, string file, int index)
    {
        ulong id = BinaryPrimitives.ReadUInt64LittleEndian(src);
        long cow = BinaryPrimitives.ReadInt64LittleEndian(src[8..]);
        uint kind = BinaryPrimitives.ReadUInt32LittleEndian(src[16..]);
        uint state = BinaryPrimitives.ReadUInt32LittleEndian(src[20..]);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(src[24..]);
        uint reason = BinaryPrimitives.ReadUInt32LittleEndian(src[28..]);
        if (kind is not (1 or 2) || state is not (1 or 2 or 3) || len is 0 or > MaxNameBytes || reason > (uint)InvalidReasonCode.LogReset || cow <= 0)
            throw new Journal.JournalException($"{file}: snapshot record {index} is malformed (kind {kind}, state {state}, name length {len}, reason {reason}, cow sectors {cow})");
        string name = Encoding.UTF8.GetString(src.Slice(32, (int)len));
        return new SnapshotRecord(id, cow, (SnapshotKindCode)kind, (SnapshotStateCode)state, (InvalidReasonCode)reason, name);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"SnapshotRecord(id {Id}, name \"{Name}\", kind {Kind}, state {State}, reason {Reason}, cow sectors {CowSectors})";
}
