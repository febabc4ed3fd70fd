namespace Journal.Testing;

/// <summary>The operations a <see cref="FaultRule"/> applies to.</summary>
[Flags]
public enum FaultOps
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Reads.</summary>
    Read = 1,
    /// <summary>Writes.</summary>
    Write = 2,
    /// <summary>Flushes (they have no sector; a flush rule matches whatever its range).</summary>
    Flush = 4,
    /// <summary>Started write-backs (<see cref="Journal.Storage.BlockDevice.StartWriteBack"/>; no sector, like flushes).</summary>
    StartWriteBack = 8,
    /// <summary>Write-backs waited for (<see cref="Journal.Storage.BlockDevice.WriteBack"/>; no sector, like flushes).</summary>
    WriteBack = 16,
    /// <summary>Reads and writes.</summary>
    ReadWrite = Read | Write,
    /// <summary>Reads, writes, flushes and write-backs.</summary>
    All = Read | Write | Flush | StartWriteBack | WriteBack,
}
