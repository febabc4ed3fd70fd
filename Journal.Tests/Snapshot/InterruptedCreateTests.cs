using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Storage;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// A snapshot create cut off by a power loss after it made the COW file (zero-filled) and before the file's header:
/// the next open removes that file, which its creation mark says the store made, and nothing else of that shape.
/// </summary>
public sealed class InterruptedCreateTests
{
    [Fact]
    public async Task A_power_cut_before_the_header_leaves_nothing_and_a_users_file_of_zeros_stays()
    {
        var cut = new PowerCut();
        var crashSim = cut.Devices.Wrap!;
        using var atHeader = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        cut.Devices.Wrap = (path, d) => path.EndsWith("/a.cow", StringComparison.Ordinal)
            ? new HeaderGate(crashSim(path, d), atHeader, release) : crashSim(path, d);
        var store = await CreateMemoryStoreAsync(cut.Devices, 256);
        var create = store.CreateSnapshotAsync("a").AsTask();
        Assert.True(atHeader.Wait(Watchdog), "the create never reached the header write");

        var images = cut.CrashImages();
        release.Set();
        await create.WaitAsync(Watchdog);
        await store.DisposeAsync();

        var mark = images.Paths.Where(p => p.Contains(".creating-", StringComparison.Ordinal)).ToArray();
        Assert.Equal([$"{Folder}/.a.cow.creating-{images.Options().StoreId:x16}"], mark);
        Assert.Contains($"{Folder}/a.cow", images.Paths);
        Assert.False(images.Backing($"{Folder}/a.cow").ToArray().AsSpan().ContainsAnyExcept((byte)0));
        // A user's file of the same shape, with no mark: not the store's.
        images.Create($"{Folder}/user.cow", 128).Dispose();

        await using (var after = await SnapshotStore.OpenAsync(Folder, images.Options()).AsTask().WaitAsync(Watchdog))
            Assert.Empty(after.Snapshots);
        Assert.DoesNotContain($"{Folder}/a.cow", images.Paths);
        Assert.DoesNotContain(mark[0], images.Paths);
        Assert.Contains($"{Folder}/user.cow", images.Paths);
        Assert.False(images.Backing($"{Folder}/user.cow").ToArray().AsSpan().ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task A_create_that_fails_at_the_header_removes_its_file_and_its_mark()
    {
        var p = new TestDeviceProvider();
        p.Wrap = (path, d) => path.EndsWith("/a.cow", StringComparison.Ordinal) ? new FailingHeader(d) : d;
        await using var store = await CreateMemoryStoreAsync(p, 256);
        await Assert.ThrowsAnyAsync<Exception>(() => store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog));
        Assert.DoesNotContain(p.Paths, x => x.EndsWith("a.cow", StringComparison.Ordinal) || x.Contains(".creating-", StringComparison.Ordinal));
        p.Wrap = null;
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(Watchdog);
        Assert.DoesNotContain(p.Paths, x => x.Contains(".creating-", StringComparison.Ordinal));
        Assert.Contains($"{Folder}/a.cow", p.Paths);
    }

    /// <summary>Holds the first write of sector 0 (the header) until released, saying when it got there.</summary>
    private sealed class HeaderGate(BlockDevice inner, ManualResetEventSlim arrived, ManualResetEventSlim release) : ForwardingDevice(inner)
    {
        private int _held;

        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            if (sector == 0 && Interlocked.Exchange(ref _held, 1) == 0)
            {
                arrived.Set();
                release.Wait();
            }
            Inner.Write(sector, data);
        }
    }

    /// <summary>Fails every write of sector 0 (the header).</summary>
    private sealed class FailingHeader(BlockDevice inner) : ForwardingDevice(inner)
    {
        protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
        {
            if (sector == 0) throw new BlockDeviceException(Name, sector, "injected header write failure");
            Inner.Write(sector, data);
        }
    }
}
