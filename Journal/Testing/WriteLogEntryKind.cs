namespace Journal.Testing;

/// <summary>What a <see cref="WriteLogEntry"/> records.</summary>
public enum WriteLogEntryKind
{
    /// <summary>A completed write: sector and a copy of the data.</summary>
    Write,
    /// <summary>A completed flush of one device.</summary>
    Flush,
    /// <summary>A completed growth of one device (the new sectors read as zeros).</summary>
    Extend,
    /// <summary>A note placed by a test (e.g. "force of LSN 3:40 returned"); changes no image.</summary>
    Mark,
    /// <summary>
    /// A completed write-back of one device (<see cref="Journal.Storage.BlockDevice.WriteBack"/>): its writes before
    /// <see cref="WriteLogEntry.DurableBefore"/> reached the storage device, durable after a later flush of any device
    /// sharing flushes with it.
    /// </summary>
    WriteBack,
}
