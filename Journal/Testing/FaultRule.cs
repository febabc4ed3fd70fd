namespace Journal.Testing;

/// <summary>
/// When a <see cref="FaultInjectingBlockDevice"/> fails an operation: the operations and the sector range it
/// watches, and whether it fails the next N matching operations (transient), every one (permanent), or each with a
/// probability drawn from the device's seeded generator (rate).
/// </summary>
public sealed class FaultRule
{
    private long _remaining;   // failures left; -1 = no limit. Guarded by the owning device's lock.
    private long _injected;

    private FaultRule(FaultOps ops, long firstSector, long sectorCount, long failures, double rate)
    {
        if (ops == FaultOps.None) throw new ArgumentException("a fault rule must name at least one operation", nameof(ops));
        ArgumentOutOfRangeException.ThrowIfNegative(firstSector);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sectorCount);
        if (!(rate > 0 && rate <= 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "rate must be in (0, 1]");
        Ops = ops;
        FirstSector = firstSector;
        SectorCount = sectorCount;
        _remaining = failures;
        Rate = rate;
    }

    /// <summary>Fails the next <paramref name="failures"/> matching operations, then lets them succeed.</summary>
    public static FaultRule Transient(FaultOps ops, int failures, long firstSector = 0, long sectorCount = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(failures);
        return new FaultRule(ops, firstSector, sectorCount, failures, 1.0);
    }

    /// <summary>Fails every matching operation until the rule is removed.</summary>
    public static FaultRule Permanent(FaultOps ops, long firstSector = 0, long sectorCount = long.MaxValue) =>
        new(ops, firstSector, sectorCount, -1, 1.0);

    /// <summary>Fails each matching operation with probability <paramref name="rate"/> (0 &lt; rate ≤ 1).</summary>
    public static FaultRule AtRate(FaultOps ops, double rate, long firstSector = 0, long sectorCount = long.MaxValue) =>
        new(ops, firstSector, sectorCount, -1, rate);

    /// <summary>The operations watched.</summary>
    public FaultOps Ops { get; }

    /// <summary>First sector of the watched range.</summary>
    public long FirstSector { get; }

    /// <summary>Length of the watched range in sectors (<see cref="long.MaxValue"/>: to the end).</summary>
    public long SectorCount { get; }

    /// <summary>Probability that a matching operation fails (1 for transient and permanent rules).</summary>
    public double Rate { get; }

    /// <summary>True for a rule that stops after a number of failures.</summary>
    public bool IsTransient => Volatile.Read(ref _remaining) >= 0;

    /// <summary>Failures this rule still has to inject (transient rules); -1 when unlimited.</summary>
    public long Remaining => Volatile.Read(ref _remaining);

    /// <summary>Failures this rule has injected.</summary>
    public long Injected => Interlocked.Read(ref _injected);

    // Caller holds the device's lock.
    internal bool Matches(FaultOps op, long sector, long sectors)
    {
        if ((Ops & op) == 0 || _remaining == 0) return false;
        if (op is FaultOps.Flush or FaultOps.StartWriteBack or FaultOps.WriteBack) return true;
        long end = SectorCount > long.MaxValue - FirstSector ? long.MaxValue : FirstSector + SectorCount;
        return sector < end && sector + sectors > FirstSector;
    }

    // Caller holds the device's lock; called when Matches held and the rate draw said "fail".
    internal void Consume()
    {
        if (_remaining > 0) _remaining--;
        Interlocked.Increment(ref _injected);
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        string range = SectorCount == long.MaxValue ? $"sectors {FirstSector}.." : $"sectors {FirstSector}..{FirstSector + SectorCount - 1}";
        string mode = Rate < 1 ? $"at rate {Rate}" : _remaining >= 0 ? $"transient, {_remaining} left" : "permanent";
        return $"fault {Ops} on {range}, {mode}, {Injected} injected";
    }
}
