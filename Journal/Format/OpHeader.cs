using System.Buffers.Binary;
using System.Globalization;

namespace Journal.Format;

/// <summary>
/// The header of one op inside a record's payload; <see cref="Length"/> bytes of op data follow it. Ops never cross a
/// record boundary: a region too long for the space left is split into several ops flagged
/// <see cref="OpFlags.Continue"/> / <see cref="OpFlags.WasContinued"/> / <see cref="OpFlags.End"/>.
/// </summary>
/// <remarks>
/// On-disk layout, 12 bytes, little-endian:
/// <code>
/// offset size field
///      0    4 tid        transaction id
///      4    4 length     bytes of op data after this header
///      8    1 client id  LogClientId (0x69 = transaction)
///      9    1 flags      OpFlags
///     10    2 reserved   zero
/// </code>
/// </remarks>
public readonly struct OpHeader : IEquatable<OpHeader>
{
    /// <summary>Bytes of an op header on disk.</summary>
    public const int Size = LogFormat.OpHeaderSize;

    /// <summary>Creates an op header.</summary>
    public OpHeader(uint transactionId, uint length, LogClientId clientId, OpFlags flags, ushort reserved = 0)
    {
        TransactionId = transactionId;
        Length = length;
        ClientId = clientId;
        Flags = flags;
        Reserved = reserved;
    }

    /// <summary>The log transaction the op belongs to.</summary>
    public uint TransactionId { get; }

    /// <summary>Bytes of op data following the header.</summary>
    public uint Length { get; }

    /// <summary>Who the op belongs to.</summary>
    public LogClientId ClientId { get; }

    /// <summary>Start / commit / continuation flags.</summary>
    public OpFlags Flags { get; }

    /// <summary>Reserved, zero.</summary>
    public ushort Reserved { get; }

    /// <summary>Writes the 12-byte on-disk form.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, TransactionId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Length);
        destination[8] = (byte)ClientId;
        destination[9] = (byte)Flags;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[10..], Reserved);
    }

    /// <summary>Reads the 12-byte on-disk form (no validation).</summary>
    public static OpHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        (LogClientId)source[8],
        (OpFlags)source[9],
        BinaryPrimitives.ReadUInt16LittleEndian(source[10..]));

    /// <inheritdoc/>
    public bool Equals(OpHeader other) =>
        TransactionId == other.TransactionId && Length == other.Length && ClientId == other.ClientId &&
        Flags == other.Flags && Reserved == other.Reserved;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is OpHeader o && Equals(o);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(TransactionId, Length, ClientId, Flags, Reserved);

    /// <summary>The flags as text, e.g. <c>START</c>, <c>CONT|WAS_CONT</c>, or <c>-</c> for none.</summary>
    public static string FlagsText(OpFlags flags)
    {
        if (flags == OpFlags.None) return "-";
        var parts = new List<string>(5);
        if ((flags & OpFlags.Start) != 0) parts.Add("START");
        if ((flags & OpFlags.Commit) != 0) parts.Add("COMMIT");
        if ((flags & OpFlags.Continue) != 0) parts.Add("CONT");
        if ((flags & OpFlags.WasContinued) != 0) parts.Add("WAS_CONT");
        if ((flags & OpFlags.End) != 0) parts.Add("END");
        var unknown = flags & ~(OpFlags.Start | OpFlags.Commit | OpFlags.Continue | OpFlags.WasContinued | OpFlags.End);
        if (unknown != 0) parts.Add("0x" + ((byte)unknown).ToString("x2", CultureInfo.InvariantCulture));
        return string.Join('|', parts);
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"op tid=0x{TransactionId:x8} len={Length} client=0x{(byte)ClientId:x2} flags={FlagsText(Flags)} reserved={Reserved}");
}
