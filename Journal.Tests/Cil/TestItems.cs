using System.Buffers.Binary;
using System.Collections.Concurrent;
using Journal.Format;
using Journal.Storage;

namespace Journal.Tests.Cil;

/// <summary>Where a <see cref="TestItem"/> is written home.</summary>
public interface ITestHome : IItemRecoveryHandler
{
    /// <summary>Writes the home copy of <paramref name="id"/> (durable after <see cref="Device"/> is flushed).</summary>
    void Write(ulong id, byte[] data, Lsn lsn);

    /// <summary>The device flushed after write-backs.</summary>
    BlockDevice Device { get; }

    /// <summary>The home copy now, if any.</summary>
    bool TryGet(ulong id, out byte[] data, out Lsn lsn);
}

/// <summary>
/// A home location for test items: written copies become durable when its device is flushed; a crash keeps only the
/// durable ones. Also the recovery handler for the items it holds.
/// </summary>
public sealed class TestHome : ITestHome
{
    public const ushort ItemType = 7;

    private readonly ConcurrentDictionary<ulong, (byte[] Data, Lsn Lsn)> _written = new();
    private readonly ConcurrentDictionary<ulong, (byte[] Data, Lsn Lsn)> _durable = new();

    public TestHome() => Device = new HomeDevice(this);

    /// <summary>The home device: flushing it makes written copies durable.</summary>
    public BlockDevice Device { get; }

    public long Writes;
    public long Completes;

    public void Write(ulong id, byte[] data, Lsn lsn)
    {
        _written[id] = (data, lsn);
        Interlocked.Increment(ref Writes);
    }

    public bool TryGet(ulong id, out byte[] data, out Lsn lsn)
    {
        if (_written.TryGetValue(id, out var v)) { data = v.Data; lsn = v.Lsn; return true; }
        data = []; lsn = Lsn.Zero; return false;
    }

    public IReadOnlyDictionary<ulong, (byte[] Data, Lsn Lsn)> Current => _written;

    /// <summary>The durable copies only (a crash).</summary>
    public TestHome Crash()
    {
        var h = new TestHome();
        foreach (var (k, v) in _durable) { h._written[k] = v; h._durable[k] = v; }
        return h;
    }

    /// <summary>Called after every flush of the home device with a copy of the durable copies.</summary>
    public Action<Dictionary<ulong, (byte[] Data, Lsn Lsn)>>? OnFlushed { get; set; }

    private void FlushAll()
    {
        foreach (var (k, v) in _written) _durable[k] = v;
        OnFlushed?.Invoke(new Dictionary<ulong, (byte[] Data, Lsn Lsn)>(_durable));
    }

    /// <summary>A home holding exactly <paramref name="durable"/> (a crash state).</summary>
    public static TestHome FromDurable(IReadOnlyDictionary<ulong, (byte[] Data, Lsn Lsn)> durable)
    {
        var h = new TestHome();
        foreach (var (k, v) in durable) { h._written[k] = v; h._durable[k] = v; }
        return h;
    }

    public Lsn GetHomeLsn(ulong itemId) => _written.TryGetValue(itemId, out var v) ? v.Lsn : Lsn.Zero;

    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        var data = new byte[regions.Sum(r => r.Length)];
        int off = 0;
        foreach (var r in regions) { r.Span.CopyTo(data.AsSpan(off)); off += r.Length; }
        _written[itemId] = (data, checkpointLsn);
    }

    public void Complete()
    {
        FlushAll();
        Interlocked.Increment(ref Completes);
    }

    private sealed class HomeDevice(TestHome home) : BlockDevice
    {
        public override string Name => "test-home";
        public override long SectorCount => 1;
        protected override void ReadCore(long sector, Span<byte> buffer) => buffer.Clear();
        protected override void WriteCore(long sector, ReadOnlySpan<byte> data) { }
        protected override void FlushCore() => home.FlushAll();
        protected override void ExtendCore(long sectorCount) { }
    }
}

/// <summary>
/// A test log item: a byte array state split into <see cref="Regions"/> regions. The first 8 bytes of the state are a
/// version number (little-endian) the tests use to model which commit a copy reflects. Its lock, pinned check and
/// home-LSN bookkeeping are <see cref="LockedLogItem"/>'s; it writes only the state and the home copy.
/// </summary>
public sealed class TestItem : LockedLogItem
{
    public readonly ITestHome Home;
    public volatile bool RefuseWriteBack;
    public byte[] State;
    public int Regions = 1;
    public long WriteBacks;

    public TestItem(ITestHome home, ulong id, int size = 64) : base(TestHome.ItemType, id, home.Device)
    {
        Home = home;
        State = new byte[Math.Max(8, size)];
    }

    public long Version => BinaryPrimitives.ReadInt64LittleEndian(State);

    /// <summary>Sets the version (and fills the rest with a pattern derived from it). Call holding the item's lock.</summary>
    public void SetVersion(long version, int? size = null)
    {
        if (size is int s && s != State.Length) State = new byte[Math.Max(8, s)];
        BinaryPrimitives.WriteInt64LittleEndian(State, version);
        for (int i = 8; i < State.Length; i++) State[i] = (byte)(version + i);
    }

    public static long VersionOf(byte[] data) => BinaryPrimitives.ReadInt64LittleEndian(data);

    public override LogItemSize GetLogSize() => new(Regions, State.Length);

    public override void FormatLog(LogVectorWriter writer)
    {
        int per = State.Length / Regions;
        for (int r = 0; r < Regions; r++)
        {
            int start = r * per;
            int len = r == Regions - 1 ? State.Length - start : per;
            writer.AddRegion(State.AsSpan(start, len));
        }
    }

    protected override ValueTask<bool> WriteHomeAsync(Lsn lsn, CancellationToken cancellationToken)
    {
        if (RefuseWriteBack) return ValueTask.FromResult(false);
        Home.Write(ItemId, (byte[])State.Clone(), lsn);
        Interlocked.Increment(ref WriteBacks);
        return ValueTask.FromResult(true);
    }
}
