namespace Journal.Testing;

/// <summary>Faults a <see cref="FaultInjectingBlockDevice"/> has injected.</summary>
/// <param name="ReadErrors">Reads failed.</param>
/// <param name="WriteErrors">Writes failed by a rule.</param>
/// <param name="FlushErrors">Flushes failed.</param>
/// <param name="OutOfSpaceErrors">Writes and growths failed by the space limit.</param>
public readonly record struct FaultCounters(long ReadErrors, long WriteErrors, long FlushErrors, long OutOfSpaceErrors)
{
    /// <summary>All injected faults.</summary>
    public long Total => ReadErrors + WriteErrors + FlushErrors + OutOfSpaceErrors;
}
