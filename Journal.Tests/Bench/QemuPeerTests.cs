using JournalBench.Peers;

namespace Journal.Tests.Bench;

/// <summary>
/// The qcow2 peers of journal-bench cow: parsing what qemu-img bench and qemu-io print, the first-write stride, the
/// arguments; and, where qemu-img and qemu-io are installed (Debian qemu-utils), one small real run of each.
/// </summary>
public class QemuPeerTests
{
    [Fact]
    public void Qemu_img_bench_seconds_are_read_from_its_completion_line()
    {
        const string output = "Sending 20000 write requests, 4096 bytes each, 16 in parallel (starting at offset 0, step size 8192)\n"
            + "Sending flush every 20000 requests\nRun completed in 1.660 seconds.\n";
        Assert.Equal(1.660, QemuImgBench.ParseSeconds(output));
        Assert.Equal(12.0, QemuImgBench.ParseSeconds("Run completed in 12 seconds."));
        Assert.Null(QemuImgBench.ParseSeconds("qemu-img: Could not open 'x': No such file or directory\n"));
    }

    [Fact]
    public void The_stride_gives_every_request_a_cluster_of_its_own_without_wrapping()
    {
        // The store's origin has twice as many chunks as writes.
        Assert.Equal(8192, QemuImgBench.FirstWriteStride(40_000L * 4096, 20_000, 4096));
        Assert.Equal(4096, QemuImgBench.FirstWriteStride(30_000L * 4096, 20_000, 4096));
        Assert.Null(QemuImgBench.FirstWriteStride(10_000L * 4096, 20_000, 4096));
        for (long count = 1; count < 5000; count += 7)
        {
            long image = 4096L * 8192;
            if (QemuImgBench.FirstWriteStride(image, count, 4096) is not { } stride) continue;
            Assert.Equal(0, stride % 4096);
            Assert.True(stride * count <= image, $"{count} requests of stride {stride} wrap an image of {image}");
        }
    }

    [Fact]
    public void Qemu_img_bench_arguments_name_depth_size_stride_and_count()
    {
        var args = QemuImgBench.Arguments("/tmp/o.qcow2", 20000, 16, 4096, 8192);
        Assert.Equal("bench -w -t none -d 16 -s 4096 -S 8192 -c 20000 --pattern=7 -f qcow2 /tmp/o.qcow2", string.Join(' ', args));
    }

    [Fact]
    public void Qemu_io_machine_readable_statistics_give_bytes_and_seconds()
    {
        var s = QemuIo.ParseStats("qemu-io> 1048576,1,0:00:00.04,26085398.574,24.877\n");
        Assert.NotNull(s);
        Assert.Equal(1048576, s.Value.Bytes);
        Assert.Equal(1, s.Value.Ops);
        Assert.Equal(1048576 / 26085398.574, s.Value.Seconds, 9);
        Assert.Null(QemuIo.ParseStats("write failed: No space left on device"));
        Assert.Null(QemuIo.ParseStats("wrote 1048576/1048576 bytes at offset 0"));
        Assert.Equal(3723.5, QemuIo.ParseTime("1:02:03.5"));
        Assert.Equal(0.77, QemuIo.ParseTime("00.77"), 9);
    }

    [Fact]
    public async Task Qemu_img_bench_runs_on_a_fresh_overlay_where_installed()
    {
        if (QemuTools.Find("qemu-img") is not { } qemuImg) return; // not installed here: nothing to run
        // Enough writes that qemu-img's time (printed to the millisecond) is not 0.000 on a fast disk; one cluster in
        // four of the 4 MiB image.
        var r = await QemuImgBench.RunAsync(qemuImg, 4 << 20, 4096, 256, 4, 4096, CancellationToken.None);
        Assert.Equal(256, r.Writes);
        Assert.True(r.Seconds > 0 && r.WritesPerS > 0);
        // The close is timed from the moment the "Run completed" line is read; when the reader saw it only after the exit
        // (a busy machine) the close is not known and no durable rate is given; a known one is never negative.
        if (r.CloseSeconds is { } close) Assert.True(close >= 0, $"close {close} s, run {r.Seconds} s");
        Assert.Contains("-S 16384", r.CommandLine);
    }

    [Fact]
    public async Task Qemu_io_writes_and_flushes_a_fresh_overlay_where_installed()
    {
        if (QemuTools.Find("qemu-img") is not { } qemuImg || QemuTools.Find("qemu-io") is not { } qemuIo) return;
        var r = await QemuIo.RunAsync(qemuIo, qemuImg, 4 << 20, 65536, 1 << 20, null, CancellationToken.None);
        Assert.Equal(4, r.Requests);
        Assert.Equal(QemuIo.DefaultCacheMode, r.CacheMode);
        Assert.True(r.WriteSeconds > 0 && r.FlushSeconds > 0 && r.BytesPerS > 0);
        var none = await QemuIo.RunAsync(qemuIo, qemuImg, 4 << 20, 65536, 4 << 20, "none", CancellationToken.None);
        Assert.Equal(1, none.Requests);
        Assert.Equal("none", none.CacheMode);
    }
}
