namespace Journal.Format;

/// <summary>Flags of an op header (the <c>flags</c> byte of <see cref="OpHeader"/>).</summary>
[Flags]
public enum OpFlags : byte
{
    /// <summary>A whole region.</summary>
    None = 0,

    /// <summary>The start op of a log transaction (no data).</summary>
    Start = 0x01,

    /// <summary>The commit op of a log transaction (no data): the transaction is complete.</summary>
    Commit = 0x02,

    /// <summary>The region goes on in a later op of the same transaction (it was split at a record boundary).</summary>
    Continue = 0x04,

    /// <summary>This op carries a later piece of a region begun in an earlier op of the same transaction.</summary>
    WasContinued = 0x08,

    /// <summary>This op carries the last piece of a split region (always with <see cref="WasContinued"/>).</summary>
    End = 0x10,
}
