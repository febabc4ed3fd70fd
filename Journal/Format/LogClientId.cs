namespace Journal.Format;

/// <summary>Who an op belongs to (the <c>client id</c> byte of <see cref="OpHeader"/>).</summary>
public enum LogClientId : byte
{
    /// <summary>An op of a log transaction (every op the writer emits today).</summary>
    Transaction = 0x69,

    /// <summary>An op of the log itself (reserved).</summary>
    Log = 0xAA,
}
