using Journal.Format;

namespace Journal.Log;

/// <summary>Where an in-core log buffer is in its life.</summary>
internal enum IclogState
{
    /// <summary>Unused; may be activated.</summary>
    Free,
    /// <summary>The one buffer ops are copied into.</summary>
    Active,
    /// <summary>Sealed; being stamped and written. Owned by its sync task, which alone touches the buffer.</summary>
    Syncing,
    /// <summary>Written; waiting for a device flush.</summary>
    Written,
    /// <summary>Covered by the flush now running.</summary>
    Flushing,
    /// <summary>Flushed; becomes free once every earlier buffer is durable too.</summary>
    Durable,
}

/// <summary>
/// An in-core log buffer: one record being filled or on its way to disk. The buffer holds the header block followed by
/// the payload blocks; ops are copied into the payload in their logical form and the record is stamped and
/// checksummed when it is sealed (<see cref="RecordCodec.Seal"/>).
/// </summary>
internal sealed class Iclog
{
    public Iclog(int index) => Index = index;

    /// <summary>Position in the ring.</summary>
    public int Index { get; }

    // Every field below is protected by the writer's lock, except while State == Syncing, when the sync task owns
    // Buffer and Header.

    /// <summary>
    /// Header block and payload blocks: one of the writer's buffers, attached when the slot is activated and given
    /// back when it becomes free (null while free).
    /// </summary>
    public byte[]? Buffer;
    public IclogState State;
    public long StartAbs;        // absolute block (cycle * logBlocks + block) of the header
    public Lsn Lsn;
    public int CapacityBytes;    // payload bytes this activation may hold (less than the buffer near the end of the log)
    public int Used;             // payload bytes copied in
    public int OpCount;
    public RecordKind Kind;
    public int Blocks;           // record blocks, set when sealed
    public RecordHeader Header;  // set when sealed
    public bool ForcePending;    // a force waits for this active buffer: seal it as soon as an earlier buffer is durable

    public int Free => CapacityBytes - Used;

    public override string ToString() => $"iclog#{Index} {State} lsn={Lsn} used={Used}/{CapacityBytes} ops={OpCount}";
}
