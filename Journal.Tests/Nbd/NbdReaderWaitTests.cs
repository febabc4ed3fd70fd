using Journal.Storage;
using Journal.Tests.Snapshot;
using Journal.Tests.Storage;
using Snapshot.Nbd;

namespace Journal.Tests.Nbd;

/// <summary>
/// A connection's reader runs each request's first steps on its own thread with
/// <see cref="BlockDevice.ReadsMustNotWait"/> set, so a read that must wait for the device goes on elsewhere and the
/// reader takes the next request meanwhile. The origin device here behaves as <see cref="FileBlockDevice"/> does for a
/// read that misses the page cache: with the setting it returns an unfinished read, without it it blocks the calling
/// thread. The first READ waits at a gate; the second, to other chunks, must be answered while the first still waits.
/// Without the setting the reader itself would block at the gate and the second READ would never be read (the test
/// fails by its watchdog).
/// </summary>
public sealed class NbdReaderWaitTests
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(30);

    private sealed class GatedDevice(BlockDevice inner, long gatedSector, Task gate) : ForwardingDevice(inner)
    {
        public int OffThread, Blocked;

        protected override ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (sector != gatedSector) return base.ReadCoreAsync(sector, buffer, cancellationToken);
            if (BlockDevice.ReadsMustNotWait)
            {
                Interlocked.Increment(ref OffThread);
                return new ValueTask(ReadAfterGateAsync(sector, buffer));
            }
            Interlocked.Increment(ref Blocked);
            gate.Wait(Watchdog * 2);
            Inner.Read(sector, buffer.Span);
            return ValueTask.CompletedTask;
        }

        private async Task ReadAfterGateAsync(long sector, Memory<byte> buffer)
        {
            await gate.ConfigureAwait(false);
            Inner.Read(sector, buffer.Span);
        }
    }

    /// <summary>A COW file that counts its growths and the ones made on a thread that must not wait.</summary>
    private sealed class GrowthCountingDevice(BlockDevice inner) : ForwardingDevice(inner)
    {
        public int Growths, OnReader;

        protected override void ExtendCore(long sectorCount)
        {
            Interlocked.Increment(ref Growths);
            if (BlockDevice.ReadsMustNotWait) Interlocked.Increment(ref OnReader);
            base.ExtendCore(sectorCount);
        }
    }

    /// <summary>
    /// A COW file's growth writes its zeros to the device and waits for them, so a first write that needs one does not
    /// grow the file on the reader's thread: it goes on on a pool thread first.
    /// </summary>
    [Fact]
    public async Task A_cow_file_growth_for_an_nbd_write_is_not_made_on_the_reader_thread()
    {
        GrowthCountingDevice? cow = null;
        var devices = new TestDeviceProvider
        {
            Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? cow = new GrowthCountingDevice(d) : d,
        };
        await using var h = await NbdHarness.StartAsync(originBytes: 32 << 20, devices: devices);
        await h.Server.CreateSnapshotAsync("s").WaitAsync(Watchdog);
        Assert.NotNull(cow);
        int before = cow!.Growths;
        await using var c = await h.OpenAsync("origin");
        var data = new byte[4096];
        for (int i = 0; i < 2048; i++) await c.WriteAsync((ulong)i * 4096 * 3 % (32 << 20), data).WaitAsync(Watchdog);
        Assert.True(cow.Growths > before, "no write needed the COW file to grow");
        Assert.Equal(0, cow.OnReader);
    }

    [Fact]
    public async Task A_read_that_waits_for_the_device_does_not_stop_the_reader_taking_the_next_request()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        GatedDevice? origin = null;
        var devices = new TestDeviceProvider
        {
            Wrap = (path, d) => path.EndsWith("origin.img", StringComparison.Ordinal) ? origin = new GatedDevice(d, 64, gate.Task) : d,
        };
        await using var h = await NbdHarness.StartAsync(devices: devices);
        Assert.NotNull(origin);
        await using var c = await h.OpenAsync("origin");
        ulong first = await c.SendRequestAsync(NbdProtocol.CmdRead, 64 * 512, 4096);
        ulong second = await c.SendRequestAsync(NbdProtocol.CmdRead, 1024 * 512, 4096);
        var reply = await c.ReadReplyAsync().WaitAsync(Watchdog);
        Assert.Equal(second, reply.Handle);
        Assert.Equal(1, origin!.OffThread);
        Assert.Equal(0, origin.Blocked);
        gate.SetResult();
        reply = await c.ReadReplyAsync().WaitAsync(Watchdog);
        Assert.Equal(first, reply.Handle);
        Assert.Equal(0u, reply.Error);
    }
}
