using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Storage;
using Snapshot;
using Snapshot.Storage;

namespace Journal.Tests.Snapshot;

/// <summary>
/// Puts in-memory devices under a whole store: every file of the store is a <see cref="MemoryBlockDevice"/> kept by
/// path, so a store can be closed and reopened (or "crashed" and reopened) in memory. Optionally every device created
/// is wrapped in a <see cref="RecordingBlockDevice"/> sharing one <see cref="WriteLog"/>, and a test can wrap devices
/// further (gates, faults) through <see cref="Wrap"/>.
/// </summary>
internal sealed class TestDeviceProvider : IDeviceProvider
{
    private readonly object _lock = new();
    private readonly Dictionary<string, MemoryBlockDevice> _devices = new(StringComparer.Ordinal);
    private readonly HashSet<string> _locked = new(StringComparer.Ordinal);
    private readonly HashSet<string> _folders = new(StringComparer.Ordinal);

    /// <summary>When set, devices are recorded into this log when they are created.</summary>
    public WriteLog? Log { get; init; }

    /// <summary>
    /// With <see cref="Log"/>: the COW files and the journal's log are recorded as sharing device flushes (like files on
    /// one ext4 file system), so commit rounds write the COW files back and flush the storage device once (a COW file's
    /// flush, or the previous round's log force), and the crash states follow that.
    /// </summary>
    public bool FilesShareFlushes { get; init; }

    /// <summary>Optional wrapper applied to every device handed out (path, device) -> device.</summary>
    public Func<string, BlockDevice, BlockDevice>? Wrap { get; set; }

    /// <summary>Recording device ids by path (when <see cref="Log"/> is set).</summary>
    public Dictionary<string, int> DeviceIds { get; } = new(StringComparer.Ordinal);

    /// <summary>Log positions at which each path was deleted (when <see cref="Log"/> is set).</summary>
    public List<(string Path, int Position)> Deletions { get; } = new();

    public StoreOptions Options(StoreOptions? o = null) => new()
    {
        OriginSectors = o?.OriginSectors ?? 0,
        ChunkSectors = o?.ChunkSectors ?? StoreOptions.DefaultChunkSectors,
        LogBlocks = o?.LogBlocks ?? 2048,
        MaxInFlightCopies = o?.MaxInFlightCopies ?? StoreOptions.DefaultMaxInFlightCopies,
        MaxPendingCopies = o?.MaxPendingCopies ?? 0,
        WriteThrough = o?.WriteThrough ?? false,
        DeferCopiedWrites = o?.DeferCopiedWrites ?? false,
        MinThreadPoolThreads = o?.MinThreadPoolThreads ?? StoreOptions.DefaultMinThreadPoolThreads,
        CowGrowthBytes = o?.CowGrowthBytes ?? (1 << 20),
        PoolReserve = o?.PoolReserve ?? 16,
        DeviceProvider = this,
        MetadataMode = o?.MetadataMode ?? MetadataMode.Journal,
        StoreId = o?.StoreId ?? 0x5354_4f52_4531_0001, // fixed, so stores in memory are byte-for-byte reproducible
        ReadOnly = o?.ReadOnly ?? false,
        CowFullPolicy = o?.CowFullPolicy ?? CowFullPolicy.InvalidateSnapshot,
        LoggerFactory = o?.LoggerFactory,
    };

    public BlockDevice Create(string path, long sectors)
    {
        lock (_lock)
        {
            if (_devices.ContainsKey(path)) throw new BlockDeviceException(path, 0, "already exists");
            var d = new MemoryBlockDevice(sectors, path);
            _devices[path] = d;
            BlockDevice handle = new SharedDevice(d);
            if (Log is not null)
            {
                var rec = new RecordingBlockDevice(handle, Log, path, leaveOpen: false,
                    sharesFlushes: FilesShareFlushes && (path.EndsWith(SnapshotStore.CowExtension, StringComparison.Ordinal)
                        || Path.GetFileName(path) == SnapshotStore.JournalFileName));
                DeviceIds[path] = rec.DeviceId;
                handle = rec;
            }
            return Wrap?.Invoke(path, handle) ?? handle;
        }
    }

    public BlockDevice Open(string path)
    {
        lock (_lock)
        {
            if (!_devices.TryGetValue(path, out var d)) throw new BlockDeviceException(path, 0, "not found");
            BlockDevice handle = new SharedDevice(d);
            return Wrap?.Invoke(path, handle) ?? handle;
        }
    }

    public bool Exists(string path) { lock (_lock) return _devices.ContainsKey(path); }

    public void Delete(string path)
    {
        lock (_lock)
        {
            if (_devices.Remove(path) && Log is not null) Deletions.Add((path, Log.Mark($"delete {path}")));
        }
    }

    public IEnumerable<string> List(string folder, string suffix)
    {
        lock (_lock) return _devices.Keys.Where(k => Path.GetDirectoryName(k) == folder.TrimEnd('/') && k.EndsWith(suffix, StringComparison.Ordinal)).ToList();
    }

    public void EnsureFolder(string folder) { lock (_lock) _folders.Add(folder); }

    public string? WhyNotWritable(string folder) => null;

    public bool IsEmptyOrMissing(string folder)
    {
        lock (_lock) return !_devices.Keys.Any(k => Path.GetDirectoryName(k) == folder.TrimEnd('/'));
    }

    /// <summary>Free bytes reported for every folder (null: unknown, as on a system that does not say).</summary>
    public long? FreeBytes { get; set; }

    public long? AvailableBytes(string folder) => FreeBytes;

    public string BeginCreate(string folder) => folder;

    public void CompleteCreate(string staging, string folder) { }

    public void AbandonCreate(string staging)
    {
        lock (_lock)
            foreach (var k in _devices.Keys.Where(k => Path.GetDirectoryName(k) == staging.TrimEnd('/')).ToList()) _devices.Remove(k);
    }

    /// <summary>The memory stores have one lock: a shared open conflicts with every other open, as a writer's would.</summary>
    public IDisposable LockShared(string folder) => Lock(folder);

    public IDisposable Lock(string folder)
    {
        lock (_lock)
        {
            if (!_locked.Add(folder)) throw new StoreInUseException(folder);
        }
        return new Releaser(() => { lock (_lock) _locked.Remove(folder); });
    }

    /// <summary>The backing device of <paramref name="path"/> (for inspecting bytes).</summary>
    public MemoryBlockDevice Backing(string path) { lock (_lock) return _devices[path]; }

    /// <summary>Paths of every device.</summary>
    public IReadOnlyList<string> Paths { get { lock (_lock) return _devices.Keys.ToList(); } }

    /// <summary>Replaces the content of every device (after a simulated crash).</summary>
    public void Replace(string path, MemoryBlockDevice device) { lock (_lock) _devices[path] = device; }

    /// <summary>A provider holding a copy of every device as it is now (a crash that keeps every write).</summary>
    public TestDeviceProvider CopyAll()
    {
        var copy = new TestDeviceProvider();
        foreach (var path in Paths) copy.Replace(path, MemoryBlockDevice.FromImage(Backing(path).ToArray(), path));
        return copy;
    }

    /// <summary>The bytes of every device now, by path.</summary>
    public Dictionary<string, byte[]> Images() => Paths.ToDictionary(x => x, x => Backing(x).ToArray());

    /// <summary>Forgets a device (e.g. a file that did not exist at a crash point).</summary>
    public void Forget(string path) { lock (_lock) _devices.Remove(path); }

    /// <summary>Forgets the lock (as if the process holding it died).</summary>
    public void BreakLocks() { lock (_lock) _locked.Clear(); }

    private sealed class Releaser(Action release) : IDisposable
    {
        private int _done;
        public void Dispose() { if (Interlocked.Exchange(ref _done, 1) == 0) release(); }
    }
}

/// <summary>A handle on a shared memory device: disposing the handle leaves the storage for the next open.</summary>
internal sealed class SharedDevice(BlockDevice inner) : ForwardingDevice(inner);

/// <summary>
/// A device whose writes can be held: while closed, every write waits (asynchronously) until <see cref="Open"/>.
/// Used to keep copies in flight.
/// </summary>
internal sealed class GatedDevice(BlockDevice inner) : ForwardingDevice(inner)
{
    private volatile TaskCompletionSource? _closed;
    private int _heldWrites;

    public int HeldWrites => Volatile.Read(ref _heldWrites);

    public void Close() => _closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Open() => Interlocked.Exchange(ref _closed, null)?.TrySetResult();

    protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var gate = _closed;
        if (gate is not null)
        {
            Interlocked.Increment(ref _heldWrites);
            try { await gate.Task.ConfigureAwait(false); }
            finally { Interlocked.Decrement(ref _heldWrites); }
        }
        Inner.Write(sector, data.Span);
    }
}
