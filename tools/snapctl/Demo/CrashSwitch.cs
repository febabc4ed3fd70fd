using Journal.Storage;

namespace SnapCtl.Demo;

/// <summary>
/// Stops every device of a store at one instant, as a power cut would: after <see cref="Crash"/> returns, no
/// operation on any <see cref="SwitchedDevice"/> of this switch is running or will ever run again (each fails with
/// a <see cref="BlockDeviceException"/>), so images taken afterwards are one consistent crash state across devices.
/// </summary>
/// <remarks>
/// No lock: an operation increments <c>_active</c> (a full fence) and then checks <c>_crashed</c>; the crash sets
/// <c>_crashed</c> (a full fence) and then waits for <c>_active</c> to drain. Either the operation sees the crash and
/// backs out, or the crash sees the operation and waits for it: an operation never straddles the crash. The wait
/// is a spin: operations on the in-memory devices it guards are short and never block.
/// </remarks>
internal sealed class CrashSwitch
{
    private int _active;
    private int _crashed;

    /// <summary>True once <see cref="Crash"/> has been called.</summary>
    public bool Crashed => Volatile.Read(ref _crashed) != 0;

    /// <summary>Stops all devices; returns when no operation is running.</summary>
    public void Crash()
    {
        Interlocked.Exchange(ref _crashed, 1);
        var spin = new SpinWait();
        while (Volatile.Read(ref _active) != 0) spin.SpinOnce();
    }

    internal void Enter(string device, long sector)
    {
        Interlocked.Increment(ref _active);
        if (Volatile.Read(ref _crashed) != 0)
        {
            Interlocked.Decrement(ref _active);
            throw new BlockDeviceException(device, sector, "the machine has crashed (simulated power cut)");
        }
    }

    internal void Exit() => Interlocked.Decrement(ref _active);
}

/// <summary>A device whose every operation passes through a <see cref="CrashSwitch"/>.</summary>
internal sealed class SwitchedDevice(BlockDevice inner, CrashSwitch crashSwitch) : BlockDevice
{
    /// <summary>The device underneath.</summary>
    public BlockDevice Inner => inner;

    /// <inheritdoc/>
    public override string Name => inner.Name;

    /// <inheritdoc/>
    public override long SectorCount => inner.SectorCount;

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        crashSwitch.Enter(Name, sector);
        try { inner.Read(sector, buffer); } finally { crashSwitch.Exit(); }
    }

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        crashSwitch.Enter(Name, sector);
        try { inner.Write(sector, data); } finally { crashSwitch.Exit(); }
    }

    /// <inheritdoc/>
    protected override void FlushCore()
    {
        crashSwitch.Enter(Name, 0);
        try { inner.Flush(); } finally { crashSwitch.Exit(); }
    }

    /// <inheritdoc/>
    protected override void ExtendCore(long sectorCount)
    {
        crashSwitch.Enter(Name, sectorCount);
        try { inner.Extend(sectorCount); } finally { crashSwitch.Exit(); }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        // The inner device belongs to whoever created this wrapper: it outlives the crashed store.
    }
}
