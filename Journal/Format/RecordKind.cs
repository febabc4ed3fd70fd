namespace Journal.Format;

/// <summary>What a log record is (the <c>kind</c> field of <see cref="RecordHeader"/>).</summary>
public enum RecordKind : ushort
{
    /// <summary>Carries ops of log transactions.</summary>
    Data = 1,

    /// <summary>Clean shutdown: no payload; when it is the last record, recovery has nothing to replay.</summary>
    Unmount = 2,

    /// <summary>Fills the blocks before the end of the log that the next record would not fit in; no ops.</summary>
    Pad = 3,
}
