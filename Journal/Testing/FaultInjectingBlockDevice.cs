using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// Wraps a device and fails chosen operations: by <see cref="FaultRule"/> (transient, permanent or at a seeded rate,
/// on a sector range) and by a space limit (writes touching, and growths reaching, sectors at or past
/// <see cref="SpaceLimit"/> fail as a full device does). A failed operation does not reach the inner device.
/// </summary>
/// <remarks>
/// Errors are <see cref="BlockDeviceException"/> (<see cref="DeviceFullException"/> for the space limit) whose
/// message names the device, the sector and says "injected ... error".
/// <para>Locking: <c>_lock</c> (a monitor) protects the rule list, the rules' remaining counts, the random
/// generator and the space limit. It is held only to decide whether an operation fails, never across the inner
/// device's I/O.</para>
/// </remarks>
public sealed class FaultInjectingBlockDevice : BlockDevice
{
    private readonly object _lock = new();
    private readonly List<FaultRule> _rules = new();
    private readonly Random _random;
    private readonly bool _leaveOpen;
    private long? _spaceLimit;
    private long _readErrors, _writeErrors, _flushErrors, _outOfSpace;

    /// <summary>Wraps <paramref name="inner"/>; <paramref name="seed"/> drives rate rules.</summary>
    public FaultInjectingBlockDevice(BlockDevice inner, int seed = 0, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner;
        _random = new Random(seed);
        _leaveOpen = leaveOpen;
    }

    /// <summary>The wrapped device.</summary>
    public BlockDevice Inner { get; }

    /// <inheritdoc/>
    public override string Name => Inner.Name;

    /// <inheritdoc/>
    public override long SectorCount => Inner.SectorCount;

    /// <inheritdoc/>
    public override bool IsReadOnly => Inner.IsReadOnly;

    /// <summary>
    /// Sectors the device may use: a write touching a sector at or past it, or a growth beyond it, fails with
    /// <see cref="DeviceFullException"/>. Null (the default) for no limit.
    /// </summary>
    public long? SpaceLimit
    {
        get { lock (_lock) return _spaceLimit; }
        set { lock (_lock) _spaceLimit = value; }
    }

    /// <summary>Counts of injected faults.</summary>
    public FaultCounters Faults => new(Interlocked.Read(ref _readErrors), Interlocked.Read(ref _writeErrors),
        Interlocked.Read(ref _flushErrors), Interlocked.Read(ref _outOfSpace));

    /// <summary>The rules in force, in the order they are checked.</summary>
    public IReadOnlyList<FaultRule> Rules { get { lock (_lock) return _rules.ToArray(); } }

    /// <summary>Adds a rule (checked after the existing ones) and returns it.</summary>
    public FaultRule AddRule(FaultRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        lock (_lock) _rules.Add(rule);
        return rule;
    }

    /// <summary>Removes a rule; true if it was there.</summary>
    public bool RemoveRule(FaultRule rule)
    {
        lock (_lock) return _rules.Remove(rule);
    }

    /// <summary>Removes every rule and the space limit.</summary>
    public void ClearFaults()
    {
        lock (_lock)
        {
            _rules.Clear();
            _spaceLimit = null;
        }
    }

    private void Check(FaultOps op, long sector, long sectors)
    {
        FaultRule? hit = null;
        lock (_lock)
        {
            if (op == FaultOps.Write && _spaceLimit is long limit && sector + sectors > limit)
            {
                Interlocked.Increment(ref _outOfSpace);
                throw new DeviceFullException(Name, sector,
                    $"no space left on device (injected out-of-space error): write of {sectors} sectors at sector {sector} reaches past the space limit of {limit} sectors");
            }
            foreach (FaultRule rule in _rules)
            {
                if (!rule.Matches(op, sector, sectors)) continue;
                if (rule.Rate < 1 && _random.NextDouble() >= rule.Rate) continue;
                rule.Consume();
                hit = rule;
                break;
            }
        }
        if (hit is null) return;
        string what = op switch
        {
            FaultOps.Read => "read", FaultOps.Write => "write", FaultOps.StartWriteBack => "start of write-back",
            FaultOps.WriteBack => "write-back", _ => "flush",
        };
        if (op == FaultOps.Read) Interlocked.Increment(ref _readErrors);
        else if (op == FaultOps.Write) Interlocked.Increment(ref _writeErrors);
        else Interlocked.Increment(ref _flushErrors);
        throw new BlockDeviceException(Name, sector, op is FaultOps.Flush or FaultOps.StartWriteBack or FaultOps.WriteBack
            ? $"injected {what} error ({hit})"
            : $"injected {what} error at sector {sector} ({sectors} sectors; {hit})");
    }

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        Check(FaultOps.Read, sector, buffer.Length >> SectorShift);
        Inner.Read(sector, buffer);
    }

    /// <inheritdoc/>
    protected override ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Check(FaultOps.Read, sector, buffer.Length >> SectorShift);
        return Inner.ReadAsync(sector, buffer, cancellationToken);
    }

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        Check(FaultOps.Write, sector, data.Length >> SectorShift);
        Inner.Write(sector, data);
    }

    /// <inheritdoc/>
    protected override ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        Check(FaultOps.Write, sector, data.Length >> SectorShift);
        return Inner.WriteAsync(sector, data, cancellationToken);
    }

    /// <inheritdoc/>
    protected override void FlushCore()
    {
        Check(FaultOps.Flush, 0, 0);
        Inner.Flush();
    }

    /// <summary>The inner device's, unless a flush rule fails it.</summary>
    protected override bool FlushAsCarrierCore()
    {
        Check(FaultOps.Flush, 0, 0);
        return Inner.FlushAsCarrier();
    }

    /// <inheritdoc/>
    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        Check(FaultOps.Flush, 0, 0);
        return Inner.FlushAsync(cancellationToken);
    }

    /// <summary>The inner device's answer, for the inner device of <paramref name="carrier"/> when it is wrapped too.</summary>
    public override bool CanFlushThrough(BlockDevice carrier)
    {
        ArgumentNullException.ThrowIfNull(carrier);
        return Inner.CanFlushThrough(carrier is FaultInjectingBlockDevice f ? f.Inner : carrier);
    }

    /// <summary>The inner device's (a flush this device failed never reached it).</summary>
    public override long FlushesBegun => Inner.FlushesBegun;

    /// <summary>The inner device's.</summary>
    public override bool HasCarriedSince(long begun) => Inner.HasCarriedSince(begun);

    /// <summary>The inner device's, unless a <see cref="FaultOps.StartWriteBack"/> rule fails it (counted as a flush error).</summary>
    public override void StartWriteBack()
    {
        ThrowIfDisposed();
        Check(FaultOps.StartWriteBack, 0, 0);
        Inner.StartWriteBack();
    }

    /// <summary>The inner device's, unless a <see cref="FaultOps.WriteBack"/> rule fails it (counted as a flush error).</summary>
    public override void WriteBack()
    {
        ThrowIfDisposed();
        Check(FaultOps.WriteBack, 0, 0);
        Inner.WriteBack();
    }

    /// <inheritdoc/>
    protected override void ExtendCore(long sectorCount)
    {
        lock (_lock)
        {
            if (_spaceLimit is long limit && sectorCount > limit)
            {
                Interlocked.Increment(ref _outOfSpace);
                throw new DeviceFullException(Name, SectorCount,
                    $"no space left on device (injected out-of-space error): growth from {SectorCount} to {sectorCount} sectors passes the space limit of {limit} sectors");
            }
        }
        Inner.Extend(sectorCount);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_leaveOpen) Inner.Dispose();
    }
}
