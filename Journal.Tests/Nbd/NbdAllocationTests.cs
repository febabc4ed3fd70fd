using Xunit.Abstractions;
using static Journal.Tests.Nbd.ExternalTools;

namespace Journal.Tests.Nbd;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NbdAllocationCollection
{
    /// <summary>Tests that count the process's allocations run alone.</summary>
    public const string Name = "NBD allocation counting (alone)";
}

/// <summary>
/// The steady-state READ and WRITE path of the server allocates nothing per request: payload buffers come from the
/// server's pool, request objects and workers are reused, replies are encoded into buffers the connection owns. The
/// store's own calls allocate a little (a closure per write), so the test runs the store on memory devices (whose I/O
/// completes at once, so the store's share is small and steady), counts the process's allocations for the same random
/// 4 KiB reads and writes at the same depth twice — through NBD, driven by fio in another process, and straight through
/// <see cref="Snapshot.StoreVolume"/> — and bounds the difference per request; the pool must allocate no buffer at all.
/// </summary>
[Collection(NbdAllocationCollection.Name)]
public sealed class NbdAllocationTests(ITestOutputHelper output)
{
    private const int Depth = 16;

    [Fact]
    public async Task The_read_and_write_path_allocates_nothing_per_request_beyond_what_the_store_does()
    {
        Require("fio");
        await using var h = await NbdHarness.StartAsync(originBytes: 64 << 20, devices: new Journal.Tests.Snapshot.TestDeviceProvider());
        const int Requests = 20000;
        string[] Fio(int n) =>
        [
            "--name=alloc", "--ioengine=nbd", $"--uri=nbd+unix:///origin?socket={h.SocketPath}", "--rw=randrw", "--rwmixread=50",
            "--bs=4k", $"--iodepth={Depth}", "--size=32M", $"--number_ios={n}", "--norandommap", "--randrepeat=1",
        ];
        // Warm up: connections, workers, pools, the thread pool, JIT.
        var warm = Run("fio", Fio(Requests / 2), TimeSpan.FromMinutes(3));
        Assert.True(warm.ExitCode == 0, warm.ToString());
        await DirectAsync(h, Requests / 2, 1);

        // The lowest of up to three trials: the store's own allocations are per commit round and checkpoint, and how many
        // writes share a round depends on timing, which differs between the two runs of one trial.
        double perRequest = double.MaxValue;
        long nbd = 0, direct = 0;
        for (int trial = 0; trial < 3 && perRequest >= 32; trial++)
        {
            long buffers0 = h.Server.BufferBytesAllocated;
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var r = Run("fio", Fio(Requests), TimeSpan.FromMinutes(3));
            nbd = GC.GetTotalAllocatedBytes(precise: true) - before;
            Assert.True(r.ExitCode == 0, r.ToString());
            long buffers = h.Server.BufferBytesAllocated - buffers0;

            before = GC.GetTotalAllocatedBytes(precise: true);
            await DirectAsync(h, Requests, 2 + trial);
            direct = GC.GetTotalAllocatedBytes(precise: true) - before;

            perRequest = Math.Min(perRequest, (nbd - direct) / (double)Requests);
            output.WriteLine($"{Requests} requests: through NBD {nbd:N0} bytes ({nbd / (double)Requests:F1}/request), straight to the store {direct:N0} bytes ({direct / (double)Requests:F1}/request); the NBD layer {perRequest:F1} bytes/request; payload buffers allocated {buffers}");
            Assert.Equal(0, buffers);
        }
        // A task, a buffer or a closure per request would add 70 bytes or more per request.
        Assert.True(perRequest < 32, $"the NBD layer allocated {perRequest:F1} bytes per request (through NBD {nbd}, direct {direct})");
    }

    /// <summary>The same mix straight through the origin volume: <see cref="Depth"/> tasks, random 4 KiB reads and writes.</summary>
    private static async Task DirectAsync(NbdHarness h, int requests, int seed)
    {
        long next = 0;
        var volume = h.Store.Origin;
        await Task.WhenAll(Enumerable.Range(0, Depth).Select(t => Task.Run(async () =>
        {
            var random = new Random(seed * 100 + t);
            var buffer = new byte[4096];
            random.NextBytes(buffer);
            while (Interlocked.Increment(ref next) <= requests)
            {
                long sector = random.Next(0, (32 << 20) / 4096) * 8L;
                if (random.Next(2) == 0) await volume.ReadAsync(sector, buffer);
                else await volume.WriteAsync(sector, buffer);
            }
        })));
    }
}
