using System.Buffers.Binary;
using System.CommandLine;
using System.Diagnostics;
using System.Numerics;
using System.Text.Json.Nodes;
using Journal;
using Journal.Format;
using static JournalBench.BenchCommon;

namespace JournalBench.Benchmarks;

/// <summary>
/// <c>journal-bench crc --sizes 512,4096,65536</c>: CRC-32C throughput of the journal's checksum
/// (<see cref="Crc32C.Compute"/>, System.IO.Hashing) against the loop the journal used before it (the
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> instruction eight bytes a step, kept here as the peer), on the same
/// buffers in the same run. Each size runs several rounds that alternate between the two, and the median round of
/// each is reported, so a noisy moment on the machine hits both.
/// </summary>
internal static class CrcBenchmark
{
    private const int Rounds = 7;

    private sealed record Row(int Size, double LoopBytesPerSecond, double HashingBytesPerSecond)
    {
        public double Speedup => HashingBytesPerSecond / LoopBytesPerSecond;
    }

    public static Command CreateCommand()
    {
        var seconds = SecondsOption(2);
        var json = JsonOption();
        var sizes = new Option<string>("--sizes") { Description = "Comma-separated buffer sizes in bytes.", DefaultValueFactory = _ => "512,4096,65536" };
        var cmd = new Command("crc", "CRC-32C throughput: System.IO.Hashing against the previous BitOperations loop, on the same buffers.") { sizes, seconds, json };
        cmd.SetAction((pr, ct) =>
        {
            double s = pr.GetValue(seconds);
            if (CheckBudget(s, null) is { } err) return Task.FromResult(UsageError(err));
            if (CountList.Parse(pr.GetValue(sizes)!, 16 << 20) is not { } list) return Task.FromResult(UsageError("--sizes must be a comma-separated list of byte counts in 1..16777216"));
            var rows = new List<Row>();
            foreach (int size in list)
            {
                ct.ThrowIfCancellationRequested();
                Progress($"crc: {size} B");
                rows.Add(RunOne(size, s));
            }
            ProgressDone();
            if (pr.GetValue(json)) PrintJson(ToJson(rows, s));
            else
            {
                Console.Out.WriteLine($"journal-bench crc: CRC-32C of one buffer, {s} s per size ({Rounds} alternating rounds, median round shown)");
                Console.Out.Write(Table(["size B", "loop MB/s", "System.IO.Hashing MB/s", "loop ns/op", "System.IO.Hashing ns/op", "speed-up"],
                    rows.Select(r => (IReadOnlyList<string>)[r.Size.ToString(), F(r.LoopBytesPerSecond / 1e6), F(r.HashingBytesPerSecond / 1e6),
                        F(r.Size / r.LoopBytesPerSecond * 1e9, 1), F(r.Size / r.HashingBytesPerSecond * 1e9, 1), F(r.Speedup, 2) + "x"])));
            }
            return Task.FromResult(0);
        });
        return cmd;
    }

    private static Row RunOne(int size, double seconds)
    {
        var data = new byte[size];
        new Random(size).NextBytes(data);
        if (LoopCrc32C(data) != Crc32C.Compute(data))
            throw new JournalException($"crc: the two implementations disagree on a {size}-byte buffer");
        // Warm-up: both paths compiled and at full tier before anything is timed.
        Measure(data, LoopCrc32C, 0.05);
        Measure(data, Crc32C.Compute, 0.05);
        var loop = new double[Rounds];
        var hashing = new double[Rounds];
        double perRound = seconds / 2 / Rounds;
        for (int r = 0; r < Rounds; r++)
        {
            loop[r] = Measure(data, LoopCrc32C, perRound);
            hashing[r] = Measure(data, Crc32C.Compute, perRound);
        }
        Array.Sort(loop);
        Array.Sort(hashing);
        return new Row(size, loop[Rounds / 2], hashing[Rounds / 2]);
    }

    private delegate uint CrcFunction(ReadOnlySpan<byte> data);

    private static uint s_sink;

    /// <summary>Bytes per second of <paramref name="crc"/> over <paramref name="data"/>, for about <paramref name="seconds"/>.</summary>
    private static double Measure(byte[] data, CrcFunction crc, double seconds)
    {
        int batch = Math.Max(1, (1 << 20) / data.Length); // about 1 MiB between clock reads
        long calls = 0;
        uint acc = 0;
        var sw = Stopwatch.StartNew();
        var limit = TimeSpan.FromSeconds(seconds);
        do
        {
            for (int i = 0; i < batch; i++) acc ^= crc(data);
            calls += batch;
        }
        while (sw.Elapsed < limit);
        double elapsed = sw.Elapsed.TotalSeconds;
        s_sink ^= acc; // keeps the results alive
        return calls * (double)data.Length / elapsed;
    }

    /// <summary>The journal's CRC-32C before System.IO.Hashing: the hardware instruction, eight bytes a step.</summary>
    private static uint LoopCrc32C(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        while (data.Length >= 8)
        {
            c = BitOperations.Crc32C(c, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        if (data.Length >= 4)
        {
            c = BitOperations.Crc32C(c, BinaryPrimitives.ReadUInt32LittleEndian(data));
            data = data[4..];
        }
        foreach (byte b in data) c = BitOperations.Crc32C(c, b);
        return ~c;
    }

    private static JsonObject ToJson(List<Row> rows, double seconds)
    {
        var results = new JsonArray();
        foreach (var r in rows)
            results.Add(new JsonObject
            {
                ["size_bytes"] = r.Size,
                ["loop_bytes_per_s"] = Math.Round(r.LoopBytesPerSecond),
                ["hashing_bytes_per_s"] = Math.Round(r.HashingBytesPerSecond),
                ["loop_ns_per_op"] = Math.Round(r.Size / r.LoopBytesPerSecond * 1e9, 2),
                ["hashing_ns_per_op"] = Math.Round(r.Size / r.HashingBytesPerSecond * 1e9, 2),
                ["speedup"] = Math.Round(r.Speedup, 3),
            });
        return new JsonObject
        {
            ["benchmark"] = "crc",
            ["settings"] = new JsonObject { ["seconds"] = seconds, ["rounds"] = Rounds, ["implementation"] = "System.IO.Hashing Crc32ParameterSet.Crc32C", ["peer"] = "BitOperations.Crc32C loop, 8 bytes a step" },
            ["machine"] = Machine(),
            ["results"] = results,
        };
    }
}
