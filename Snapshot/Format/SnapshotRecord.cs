using System.Buffers.Binary;
using System.Text;

namespace Snapshot.Format;

/// <summary>Kind of snapshot as recorded in the superblock.</summary>
internal enum SnapshotKindCode : uint
{
    Persistent = 1,
    Transient = 2,
}

/// <summary>
/// Flags of a snapshot record, kept in the upper 16 bits of its <c>kind</c> field (the kind code needs the lower 16).
/// </summary>
[Flags]
internal enum SnapshotRecordFlags : uint
{
    None = 0,

    /// <summary>
    /// A user write into the snapshot was issued at least once (set durably before the first such write starts; see
    /// <c>Snapshot/Changes/ChangeTracker.cs</c>). Changed-block tracking compares contents only for snapshots with it.
    /// </summary>
    Written = 1,
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
    /// <summary>The COW file was not there when the store was opened.</summary>
    CowMissing = 6,
    /// <summary>The COW file could not be read back (bad header, bad metadata, truncated).</summary>
    CowDamaged = 7,
}

/// <summary>
/// One snapshot in the superblock: 96 bytes.
/// <code>
/// offset size field
///      0    8 le64 id             unique within the store, never reused
///      8    8 le64 cow_sectors    configured COW size (total_sectors in status)
///     16    4 le32 kind           bits 0..15: 1 persistent, 2 transient; bit 16: flag written (SnapshotRecordFlags);
///                                 bits 17..31: COW stamp, the stamp the COW file's header carries (CowHeader, offset
///                                 112; 0 = none)
///     20    4 le32 state          1 valid, 2 invalid, 3 merging (valid, a merge into the origin is unfinished)
///     24    4 le32 name_length    bytes of UTF-8, 1..64
///     28    4 le32 reason         why invalid: 0 none, 1 COW full, 2 I/O error, 3 transient lost at close, 4 header says invalid, 5 journal reset, 6 COW file missing, 7 COW file damaged
///     32   64 name                UTF-8, zero padded
/// </code>
/// </summary>
internal readonly record struct SnapshotRecord(ulong Id, long CowSectors, SnapshotKindCode Kind, SnapshotStateCode State, InvalidReasonCode Reason, string Name)
{
    /// <summary>Bytes on disk.</summary>
    public const int Size = 96;

    /// <summary>Flags kept in bit 16 of the kind field.</summary>
    public SnapshotRecordFlags Flags { get; init; }

    /// <summary>
    /// The stamp the snapshot's COW file header carries (<see cref="CowHeader.Stamp"/>, at most
    /// <see cref="CowHeader.MaxStamp"/>; 0 = none), in bits 17..31 of the kind field: a header behind it is an older copy
    /// of the file.
    /// </summary>
    public uint CowStamp { get; init; }

    /// <summary>The stamp's place in the kind field.</summary>
    private const int StampShift = 17;

    /// <summary>Every flag this version knows; a record with another bit set is refused.</summary>
    public const SnapshotRecordFlags KnownFlags = SnapshotRecordFlags.Written;

    /// <summary>Bits of the kind field below the flags.</summary>
    private const int FlagShift = 16;

    /// <summary>Most bytes of UTF-8 in a snapshot name.</summary>
    public const int MaxNameBytes = 64;

    public void Write(Span<byte> dst)
    {
        dst[..Size].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(dst, Id);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], CowSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)Kind | (uint)Flags << FlagShift | (CowStamp & CowHeader.MaxStamp) << StampShift);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], (uint)State);
        int n = Encoding.UTF8.GetBytes(Name, dst.Slice(32, MaxNameBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(dst[24..], (uint)n);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[28..], (uint)Reason);
    }

    public static SnapshotRecord Read(ReadOnlySpan<byte> src, string file, int index)
    {
        ulong id = BinaryPrimitives.ReadUInt64LittleEndian(src);
        long cow = BinaryPrimitives.ReadInt64LittleEndian(src[8..]);
        uint kindField = BinaryPrimitives.ReadUInt32LittleEndian(src[16..]);
        uint kind = kindField & 0xffff;
        uint flags = kindField >> FlagShift & 1;
        uint stamp = kindField >> StampShift;
        uint state = BinaryPrimitives.ReadUInt32LittleEndian(src[20..]);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(src[24..]);
        uint reason = BinaryPrimitives.ReadUInt32LittleEndian(src[28..]);
        if (kind is not (1 or 2) || state is not (1 or 2 or 3) || len is 0 or > MaxNameBytes || reason > (uint)InvalidReasonCode.CowDamaged || cow <= 0)
            throw new Journal.JournalException($"{file}: snapshot record {index} is malformed (kind {kind}, state {state}, name length {len}, reason {reason}, cow sectors {cow})");
        var nameBytes = src.Slice(32, (int)len);
        string name;
        try
        {
            name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(nameBytes);
        }
        catch (DecoderFallbackException)
        {
            throw new Journal.JournalException($"{file}: snapshot record {index}: the name is not UTF-8 ({Convert.ToHexString(nameBytes)})");
        }
        if (src.Slice(32 + (int)len, MaxNameBytes - (int)len).IndexOfAnyExcept((byte)0) >= 0)
            throw new Journal.JournalException($"{file}: snapshot record {index}: bytes after the {len}-byte name are not zero");
        return new SnapshotRecord(id, cow, (SnapshotKindCode)kind, (SnapshotStateCode)state, (InvalidReasonCode)reason, name) { Flags = (SnapshotRecordFlags)flags, CowStamp = stamp };
    }

    /// <summary>
    /// Why <paramref name="name"/> is not a snapshot name, or null when it is one: 1 to 64 bytes of UTF-8, letters,
    /// digits, '.', '_' and '-' only, no "..", not starting with '.', not "origin". The same rule applies to a name a
    /// user gives and to a name read from disk (it becomes a file name in the store folder).
    /// </summary>
    public static string? NameProblem(string name)
    {
        if (name.Length == 0) return "snapshot name is empty";
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes > MaxNameBytes) return $"snapshot name '{Printable(name)}' is too long: {bytes} bytes, at most {MaxNameBytes}";
        if (name.Contains('/') || name.Contains('\\')) return $"snapshot name '{Printable(name)}' contains a path separator";
        if (name.Contains("..")) return $"snapshot name '{Printable(name)}' contains \"..\"";
        if (name[0] == '.') return $"snapshot name '{Printable(name)}' starts with '.'";
        foreach (char ch in name)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-'))
                return $"snapshot name '{Printable(name)}' contains '{(char.IsControl(ch) ? $"\\u{(int)ch:x4}" : ch.ToString())}': use letters, digits, '.', '_' and '-'";
        if (name == "origin") return "snapshot name 'origin' is reserved for the origin volume";
        return null;
    }

    /// <summary>The name with control characters escaped, fit for a one-line message.</summary>
    private static string Printable(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (char ch in name) sb.Append(char.IsControl(ch) ? $"\\u{(int)ch:x4}" : ch.ToString());
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"SnapshotRecord(id {Id}, name \"{Name}\", kind {Kind}, flags {Flags}, state {State}, reason {Reason}, cow sectors {CowSectors})";
}
