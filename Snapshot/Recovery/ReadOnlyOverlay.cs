using Journal.Storage;
using Snapshot.Storage;

namespace Snapshot.Recovery;

/// <summary>
/// A device provider that lets the store run its whole open on a folder without changing it: every file is read from
/// the folder (opened read-only), and everything the store writes, creates, extends or deletes stays in memory and is
/// forgotten afterwards. <see cref="StoreRecovery.CheckAsync(string, CancellationToken)"/> opens the store through it, so
/// a check accepts and refuses exactly what a real open (a replay) does. The lock is the real one: a store in use is
/// refused, as it would be by a replay.
/// </summary>
/// <remarks>Locking: <c>_lock</c> protects the maps below; it is a leaf, held for dictionary work only.</remarks>
internal sealed class ReadOnlyOverlayProvider(IDeviceProvider underlying, Func<string, BlockDevice> openReadOnly, bool sharedLock = false) : IDeviceProvider
{
    private readonly object _lock = new();
    private readonly Dictionary<string, OverlayState> _states = new(StringComparer.Ordinal);   // files opened or created
    private readonly HashSet<string> _deleted = new(StringComparer.Ordinal);
    private readonly List<BlockDevice> _inners = new();                                          // real files opened

    /// <summary>
    /// An overlay of the real files, opened read-only by <see cref="FileBlockDevice"/>; anything but a regular file is
    /// refused before it is opened (opening a FIFO would wait for a writer).
    /// </summary>
    /// <param name="sharedLock">Take the store's lock shared (a read-only open, which works on a read-only file
    /// system) instead of exclusively (a check, which refuses exactly what a replay would).</param>
    public static ReadOnlyOverlayProvider OverFiles(bool sharedLock = false) => new(FileDeviceProvider.Instance, path =>
    {
        if (RegularFile.WhatElse(path) is { } what)
            throw new DeviceOpenException(Path.GetFullPath(path), DeviceOpenError.NotRegularFile, $"is {what}, not a regular file");
        return FileBlockDevice.Open(path, readOnly: true);
    }, sharedLock);

    public BlockDevice Create(string path, long sectors)
    {
        lock (_lock)
        {
            if (Exists(path)) throw new BlockDeviceException(path, 0, "already exists");
            _deleted.Remove(path);
            var state = new OverlayState(path, null, sectors);
            _states[path] = state;
            return new OverlayDevice(state);
        }
    }

    public BlockDevice Open(string path)
    {
        lock (_lock)
        {
            if (_deleted.Contains(path)) throw new DeviceOpenException(path, DeviceOpenError.Missing, "no such file");
            if (!_states.TryGetValue(path, out var state))
            {
                var inner = openReadOnly(path);
                _inners.Add(inner);
                state = new OverlayState(path, inner, inner.SectorCount);
                _states[path] = state;
            }
            return new OverlayDevice(state);
        }
    }

    // Nothing is created or removed for real through the overlay: a check opens a store, it never makes one.
    public string? WhyNotWritable(string folder) => null;

    public bool IsEmptyOrMissing(string folder) => underlying.IsEmptyOrMissing(folder);

    public long? AvailableBytes(string folder) => null;

    public string BeginCreate(string folder) => throw new InvalidOperationException("a read-only overlay does not create stores");

    public void CompleteCreate(string staging, string folder) => throw new InvalidOperationException("a read-only overlay does not create stores");

    public void AbandonCreate(string staging) { }

    public bool Exists(string path)
    {
        lock (_lock)
        {
            if (_deleted.Contains(path)) return false;
            return _states.ContainsKey(path) || underlying.Exists(path);
        }
    }

    public void Delete(string path)
    {
        lock (_lock)
        {
            _deleted.Add(path);
            _states.Remove(path);   // its real file, if any, stays open until the overlay is disposed
        }
    }

    public IEnumerable<string> List(string folder, string suffix)
    {
        lock (_lock)
        {
            var names = new HashSet<string>(underlying.List(folder, suffix), StringComparer.Ordinal);
            foreach (var p in _states.Keys)
                if (p.EndsWith(suffix, StringComparison.Ordinal) && string.Equals(Path.GetDirectoryName(p), folder.TrimEnd('/'), StringComparison.Ordinal))
                    names.Add(p);
            names.ExceptWith(_deleted);
            return names.ToList();
        }
    }

    public void EnsureFolder(string folder) { }

    public IDisposable Lock(string folder) => sharedLock ? underlying.LockShared(folder) : underlying.Lock(folder);

    public IDisposable LockShared(string folder) => underlying.LockShared(folder);

    /// <summary>Closes every real file opened through the overlay.</summary>
    public void CloseFiles()
    {
        lock (_lock)
        {
            foreach (var d in _inners) d.Dispose();
            _inners.Clear();
            _states.Clear();
        }
    }

    /// <summary>One file: the real device (null for a file created in the overlay) and the sectors written over it.</summary>
    private sealed class OverlayState(string name, BlockDevice? inner, long sectors)
    {
        public readonly object Lock = new();   // leaf: the sector map and the size
        public readonly string Name = inner?.Name ?? name;
        public readonly BlockDevice? Inner = inner;
        public readonly Dictionary<long, byte[]> Written = new();
        public long Sectors = sectors;
    }

    /// <summary>A handle on an overlay file: reads see the real file with the overlay's writes on top; writes stay in memory.</summary>
    private sealed class OverlayDevice(OverlayState state) : BlockDevice
    {
        public override string Name => state.Name;

        public override long SectorCount { get { lock (state.Lock) return state.Sectors; } }

        protected override void ReadCore(long sector, Span<byte> buffer)
        {
            int count = buffer.Length / SectorSize;
            lock (state.Lock)
            {
                long real = state.Inner is null ? 0 : Math.Clamp(state.Inner.SectorCount - sector, 0, count);
                if (real > 0) state.Inner!.Read(sector, buffer[..(int)(real * SectorSize)]);
                buffer[(int)(real * SectorSize)..].Clear();
                for (int i = 0; i < count; i++)
                    if (state.Written.TryGetValue(sector + i, out var s)) s.CopyTo(buffer.Slice(i * SectorSize, SectorSize));
            }
        }

        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            lock (state.Lock)
                for (int i = 0; i < data.Length / SectorSize; i++)
                    state.Written[sector + i] = data.Slice(i * SectorSize, SectorSize).ToArray();
        }

        protected override void FlushCore() { }

        protected override void ExtendCore(long sectorCount)
        {
            lock (state.Lock) state.Sectors = Math.Max(state.Sectors, sectorCount);
        }
    }
}
