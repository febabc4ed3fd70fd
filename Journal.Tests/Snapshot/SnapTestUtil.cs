using Snapshot;

namespace Journal.Tests.Snapshot;

/// <summary>Helpers shared by the snapshot store tests.</summary>
internal static class SnapTestUtil
{
    /// <summary>Watchdog for any single await in these tests.</summary>
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(30);

    public const string Folder = "/mem/store";

    /// <summary>A deterministic sector pattern: every byte depends on (sector, version).</summary>
    public static byte[] Pattern(long sector, int sectors, int version)
    {
        var b = new byte[sectors * 512];
        for (int s = 0; s < sectors; s++)
        {
            uint x = (uint)((sector + s) * 2654435761L) ^ (uint)(version * 40503 + 17);
            for (int i = 0; i < 512; i += 4)
            {
                x ^= x << 13; x ^= x >> 17; x ^= x << 5;
                BitConverter.TryWriteBytes(b.AsSpan(s * 512 + i), x);
            }
        }
        return b;
    }

    public static async Task<byte[]> ReadAsync(StoreVolume v, long sector, int sectors)
    {
        var b = new byte[sectors * 512];
        await v.ReadAsync(sector, b).AsTask().WaitAsync(Watchdog);
        return b;
    }

    public static Task WriteAsync(StoreVolume v, long sector, byte[] data) => v.WriteAsync(sector, data).AsTask().WaitAsync(Watchdog);

    public static async Task<SnapshotStore> CreateMemoryStoreAsync(TestDeviceProvider p, long originSectors, int chunkSectors = 8,
        int maxInFlight = StoreOptions.DefaultMaxInFlightCopies, bool writeThrough = false, int maxPending = 0, bool deferWrites = false)
    {
        var o = p.Options(new StoreOptions
        {
            OriginSectors = originSectors, ChunkSectors = chunkSectors, MaxInFlightCopies = maxInFlight, MaxPendingCopies = maxPending, WriteThrough = writeThrough,
            CowGrowthBytes = 1 << 20, LogBlocks = 2048, DeferCopiedWrites = deferWrites,
        });
        return await SnapshotStore.CreateAsync(Folder, o).AsTask().WaitAsync(Watchdog);
    }

    /// <summary>
    /// A memory store of <paramref name="sectors"/> origin sectors written with pattern 1, and snapshot "s" of it; the
    /// device whose path ends with <paramref name="suffix"/> (the last one opened by then) is wrapped by
    /// <paramref name="wrap"/> and returned.
    /// </summary>
    public static async Task<(SnapshotStore Store, T Device)> CreateWithSnapshotAsync<T>(int sectors, string suffix,
        Func<global::Journal.Storage.BlockDevice, T> wrap, int chunkSectors = 8, bool deferWrites = false) where T : global::Journal.Storage.BlockDevice
    {
        T? device = null;
        var p = new TestDeviceProvider
        {
            Wrap = (path, d) => path.EndsWith(suffix, StringComparison.Ordinal) ? device = wrap(d) : d,
        };
        var store = await CreateMemoryStoreAsync(p, sectors, chunkSectors, deferWrites: deferWrites);
        await WriteAsync(store.Origin, 0, Pattern(0, sectors, 1));
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        return (store, device ?? throw new InvalidOperationException($"no device ending with {suffix} was opened"));
    }

    public static Task<SnapshotStore> ReopenAsync(TestDeviceProvider p, int maxInFlight = StoreOptions.DefaultMaxInFlightCopies) =>
        SnapshotStore.OpenAsync(Folder, p.Options(new StoreOptions { MaxInFlightCopies = maxInFlight })).AsTask().WaitAsync(Watchdog);
}
