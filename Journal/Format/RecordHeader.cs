using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Journal.Format;

/// <summary>
/// The first block of every log record.
/// </summary>
/// <remarks>
/// On-disk layout, one 512-byte block, little-endian:
/// <code>
/// offset size field
///      0    4 magic          0xF00D1065 (LogFormat.RecordMagic)
///      4    4 cycle          the pass over the log this record was written in (1, 2, ...)
///      8    2 version        1
///     10    2 kind           RecordKind: 1 data, 2 unmount, 3 pad
///     12    4 length         payload bytes (ops); the record has ceil(length / 512) payload blocks, at most 112
///     16    8 lsn            this record's LSN: cycle in the high 32 bits, block of this header in the low 32
///     24    8 tail lsn       the oldest LSN recovery still needed when this record was written
///     32    4 crc            CRC-32C of this block (with these 4 bytes zero) followed by the payload blocks as stored
///     36    4 op count       ops in the payload
///     40    4 prev block     block of the previous record's header, 0xFFFFFFFF for none
///     44    4 log blocks     size of the log in blocks (a record read from a log of another size is refused)
///     48    8 durable lsn    the LSN of the last record the writer knew to be durable when it sealed this one
///     56    8 reserved       zero
///     64  448 displaced[112] displaced[i] = the original first 4 bytes of payload block i (unused entries zero)
/// </code>
/// Every payload block has its first 4 bytes overwritten with <see cref="Cycle"/> on disk; the reader puts the
/// displaced words back after checking the CRC.
/// </remarks>
public struct RecordHeader
{
    /// <summary>Bytes of a record header on disk.</summary>
    public const int Size = LogFormat.RecordHeaderSize;

    /// <summary>Offset of the CRC field.</summary>
    public const int CrcOffset = 32;

    /// <summary>Offset of the displaced words.</summary>
    public const int DisplacedOffset = LogFormat.RecordHeaderFixedSize;

    /// <summary>Offset of the reserved field.</summary>
    public const int ReservedOffset = 56;

    /// <summary>Bytes of the reserved field.</summary>
    public const int ReservedSize = 8;

    /// <summary>The magic (<see cref="LogFormat.RecordMagic"/>).</summary>
    public uint Magic { get; set; }

    /// <summary>The cycle the record was written in; also stamped into every payload block.</summary>
    public uint Cycle { get; set; }

    /// <summary>The format version.</summary>
    public ushort Version { get; set; }

    /// <summary>What the record is.</summary>
    public RecordKind Kind { get; set; }

    /// <summary>Payload bytes.</summary>
    public uint Length { get; set; }

    /// <summary>The record's LSN (its cycle and the block of this header).</summary>
    public Lsn Lsn { get; set; }

    /// <summary>The log tail when the record was written.</summary>
    public Lsn TailLsn { get; set; }

    /// <summary>The stored CRC-32C.</summary>
    public uint Crc { get; set; }

    /// <summary>Number of ops in the payload.</summary>
    public uint OpCount { get; set; }

    /// <summary>Block of the previous record's header, or <see cref="LogFormat.NoPreviousBlock"/>.</summary>
    public uint PreviousBlock { get; set; }

    /// <summary>Size of the log in blocks.</summary>
    public uint LogBlocks { get; set; }

    /// <summary>
    /// The LSN of the last record that was durable when this record was sealed. A record that is damaged although a
    /// later good record names it (or a later one) here was on stable storage: the damage is corruption, not a torn
    /// write.
    /// </summary>
    public Lsn DurableLsn { get; set; }

    /// <summary>True when a reserved byte was not zero when read (they are always written zero).</summary>
    public bool ReservedNonZero { get; set; }

    /// <summary>The displaced first words of the payload blocks.</summary>
    public DisplacedWords Displaced;

    /// <summary>Payload blocks of this record.</summary>
    public readonly int PayloadBlocks => LogFormat.PayloadBlocksFor(Length);

    /// <summary>Blocks of this record, header included.</summary>
    public readonly int RecordBlocks => 1 + PayloadBlocks;

    /// <summary>Writes the 512-byte header block (the CRC field as it is in <see cref="Crc"/>).</summary>
    public readonly void Write(Span<byte> block)
    {
        block = block[..Size];
        block.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], Cycle);
        BinaryPrimitives.WriteUInt16LittleEndian(block[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(block[10..], (ushort)Kind);
        BinaryPrimitives.WriteUInt32LittleEndian(block[12..], Length);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], Lsn.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(block[24..], TailLsn.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(block[CrcOffset..], Crc);
        BinaryPrimitives.WriteUInt32LittleEndian(block[36..], OpCount);
        BinaryPrimitives.WriteUInt32LittleEndian(block[40..], PreviousBlock);
        BinaryPrimitives.WriteUInt32LittleEndian(block[44..], LogBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(block[48..], DurableLsn.Value);
        for (int i = 0; i < LogFormat.MaxPayloadBlocks; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(block[(DisplacedOffset + 4 * i)..], Displaced[i]);
    }

    /// <summary>Reads a header block (no validation: see the recovery rules).</summary>
    public static RecordHeader Read(ReadOnlySpan<byte> block)
    {
        var h = new RecordHeader
        {
            Magic = BinaryPrimitives.ReadUInt32LittleEndian(block),
            Cycle = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]),
            Version = BinaryPrimitives.ReadUInt16LittleEndian(block[8..]),
            Kind = (RecordKind)BinaryPrimitives.ReadUInt16LittleEndian(block[10..]),
            Length = BinaryPrimitives.ReadUInt32LittleEndian(block[12..]),
            Lsn = Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(block[16..])),
            TailLsn = Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(block[24..])),
            Crc = BinaryPrimitives.ReadUInt32LittleEndian(block[CrcOffset..]),
            OpCount = BinaryPrimitives.ReadUInt32LittleEndian(block[36..]),
            PreviousBlock = BinaryPrimitives.ReadUInt32LittleEndian(block[40..]),
            LogBlocks = BinaryPrimitives.ReadUInt32LittleEndian(block[44..]),
            DurableLsn = Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(block[48..])),
            ReservedNonZero = block.Slice(ReservedOffset, ReservedSize).ContainsAnyExcept((byte)0),
        };
        for (int i = 0; i < LogFormat.MaxPayloadBlocks; i++)
            h.Displaced[i] = BinaryPrimitives.ReadUInt32LittleEndian(block[(DisplacedOffset + 4 * i)..]);
        return h;
    }

    /// <summary>True when the displaced words past <see cref="PayloadBlocks"/> are all zero, as written.</summary>
    public readonly bool UnusedDisplacedAreZero()
    {
        int used = Math.Min(PayloadBlocks, LogFormat.MaxPayloadBlocks);
        for (int i = used; i < LogFormat.MaxPayloadBlocks; i++)
            if (Displaced[i] != 0) return false;
        return true;
    }

    /// <summary>The kind as text (<c>DATA</c>, <c>UNMOUNT</c>, <c>PAD</c>, or the number).</summary>
    public static string KindText(RecordKind kind) => kind switch
    {
        RecordKind.Data => "DATA",
        RecordKind.Unmount => "UNMOUNT",
        RecordKind.Pad => "PAD",
        _ => ((ushort)kind).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>Every field; the displaced words are listed for the record's payload blocks (the rest are zero when valid).</summary>
    public override readonly string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"record magic=0x{Magic:x8} cycle={Cycle} version={Version} kind={KindText(Kind)} len={Length} lsn={Lsn} tail={TailLsn} ");
        sb.Append(CultureInfo.InvariantCulture,
            $"crc=0x{Crc:x8} ops={OpCount} prev={(PreviousBlock == LogFormat.NoPreviousBlock ? "none" : PreviousBlock.ToString(CultureInfo.InvariantCulture))} ");
        sb.Append(CultureInfo.InvariantCulture, $"logblocks={LogBlocks} durable={DurableLsn} reserved={(ReservedNonZero ? "nonzero" : "0")} displaced=[");
        int used = Math.Min(PayloadBlocks, LogFormat.MaxPayloadBlocks);
        for (int i = 0; i < used; i++)
        {
            if (i > 0) sb.Append(' ');
            sb.Append(CultureInfo.InvariantCulture, $"{Displaced[i]:x8}");
        }
        if (!UnusedDisplacedAreZero()) sb.Append(" +nonzero-unused");
        sb.Append(']');
        return sb.ToString();
    }
}

/// <summary>The 112 displaced first words of a record's payload blocks, kept in its header.</summary>
[InlineArray(LogFormat.MaxPayloadBlocks)]
public struct DisplacedWords
{
    private uint _element0;
}
