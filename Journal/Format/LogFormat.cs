namespace Journal.Format;

/// <summary>
/// Constants of the on-disk log format (byte for byte in <c>docs/format.md</c>).
/// </summary>
/// <remarks>
/// The log is a circular region of <see cref="BlockSize"/>-byte blocks. It holds a sequence of records, each a
/// <see cref="RecordHeader"/> block followed by up to <see cref="MaxPayloadBlocks"/> payload blocks. The first four
/// bytes of every payload block are replaced by the record's cycle (the displaced words are kept in the header), and
/// the header carries the cycle at offset 4 after its magic at offset 0. So the first word of a block tells a header
/// (it is <see cref="RecordMagic"/>, which no cycle can equal) from any other block, and every block carries the
/// cycle it was written in: the head of the log is where the cycle drops.
/// </remarks>
public static class LogFormat
{
    /// <summary>Bytes in one log block (equal to the device sector).</summary>
    public const int BlockSize = 512;

    /// <summary>log2(<see cref="BlockSize"/>).</summary>
    public const int BlockShift = 9;

    /// <summary>First word of every record header block: bytes <c>65 10 0d f0</c> on disk.</summary>
    public const uint RecordMagic = 0xF00D1065;

    /// <summary>The format version written and the only one read.</summary>
    public const ushort Version = 1;

    /// <summary>Size of a record header (one block).</summary>
    public const int RecordHeaderSize = BlockSize;

    /// <summary>Size of the fixed fields at the start of a record header; the displaced words follow.</summary>
    public const int RecordHeaderFixedSize = 64;

    /// <summary>Payload blocks one record can have: one displaced word per block fits in the header.</summary>
    public const int MaxPayloadBlocks = (RecordHeaderSize - RecordHeaderFixedSize) / 4;

    /// <summary>Payload bytes one record can carry (<see cref="MaxPayloadBlocks"/> blocks).</summary>
    public const int MaxPayloadBytes = MaxPayloadBlocks * BlockSize;

    /// <summary>Blocks of the largest record (header and payload).</summary>
    public const int MaxRecordBlocks = 1 + MaxPayloadBlocks;

    /// <summary>Size of an op header inside a record's payload.</summary>
    public const int OpHeaderSize = 12;

    /// <summary>
    /// Largest cycle a writer may use. Cycles stay below 2^31 so that a cycle stamp can never equal
    /// <see cref="RecordMagic"/>.
    /// </summary>
    public const uint MaxCycle = 0x7FFF_FFFF;

    /// <summary>The previous-record field of a record that has no previous record.</summary>
    public const uint NoPreviousBlock = 0xFFFF_FFFF;

    /// <summary>Smallest log region accepted, in blocks.</summary>
    public const uint MinLogBlocks = 16;

    /// <summary>Largest log region accepted, in blocks (block numbers fit in 31 bits).</summary>
    public const uint MaxLogBlocks = 0x7FFF_FFFF;

    /// <summary>Upper bound of <see cref="InFlightWindowBlocks"/> for large logs.</summary>
    public const uint MaxInFlightBlocks = 2048;

    /// <summary>
    /// The in-flight window of a log of <paramref name="logBlocks"/> blocks: a writer never has more than this many
    /// blocks written but not yet durable (counted from the end of the last durable record), and recovery therefore
    /// looks this far behind the apparent head for holes and torn records. At most half the log, so the window behind
    /// the head never reaches blocks a lost write could have left ahead of it.
    /// </summary>
    public static uint InFlightWindowBlocks(uint logBlocks) => Math.Min(MaxInFlightBlocks, logBlocks / 2);

    /// <summary>Payload blocks needed for <paramref name="payloadBytes"/> bytes.</summary>
    public static int PayloadBlocksFor(long payloadBytes) => checked((int)((payloadBytes + BlockSize - 1) >> BlockShift));
}
