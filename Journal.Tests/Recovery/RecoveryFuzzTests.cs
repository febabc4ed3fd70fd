using System.Buffers.Binary;
using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Xunit.Abstractions;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Recovery;

/// <summary>
/// Damages logs at random (bit flips, overwritten or zeroed blocks, truncation, forged records with a correct CRC) and
/// checks that recovery either succeeds or throws <see cref="CorruptionException"/> (delivering nothing), and that
/// whatever it delivers is byte for byte a transaction that was written; with a forged record, every transaction that
/// has no op in that record.
/// </summary>
/// <remarks>Size knob: <c>JOURNAL_FUZZ_ITERATIONS</c> (default 3000) damaged logs per base log; seeded.</remarks>
public class RecoveryFuzzTests(ITestOutputHelper output)
{
    private const uint LogBlocks = 256;
    private const long LogStart = 2;

    private static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : 3000;

    private static async Task<(byte[] Image, Dictionary<uint, byte[][]> Written)> BaseLog(int seed, bool unmount)
    {
        var dev = new MemoryBlockDevice(LogStart + LogBlocks + 1, "fuzz.log");
        var region = new LogRegion(dev, LogStart, LogBlocks);
        LogWriter.Format(region);
        var written = new Dictionary<uint, byte[][]>();
        var rng = new Random(seed);
        var starts = new List<Lsn>();
        await using (var w = LogWriter.Open(region, new LogWriterOptions { IclogCount = 4, IclogSize = 2048 }))
        {
            for (int i = 0; i < 150; i++)
            {
                uint tid = w.AllocateTransactionId();
                var regions = Enumerable.Range(0, rng.Next(1, 4)).Select(_ =>
                {
                    var b = new byte[rng.Next(10) < 8 ? rng.Next(1, 600) : rng.Next(2000, 6000)];
                    rng.NextBytes(b);
                    return b;
                }).ToArray();
                written[tid] = regions;
                var start = await w.WriteAsync(tid, regions.Select(r => (ReadOnlyMemory<byte>)r).ToArray(), start: true).Within();
                starts.Add(start);
                var commit = await w.WriteCommitAsync(tid).Within();
                if (rng.Next(2) == 0) await w.ForceAsync(commit).Within();
                if (starts.Count > 8) w.MoveTail(starts[^8]);
            }
            if (unmount) await w.WriteUnmountAsync().Within();
            else await w.ForceAllAsync().Within();
            // A few unforced, uncommitted ops at the head.
            await w.WriteAsync(w.AllocateTransactionId(), [new byte[100]], start: true).Within();
        }
        return (dev.ToArray(), written);
    }

    [Theory]
    [InlineData(11, false)]
    [InlineData(12, true)]
    public async Task Damaged_log_recovers_or_throws_corruption_and_never_delivers_damaged_data(int seed, bool unmount)
    {
        var (image, written) = await BaseLog(seed, unmount);
        var baseline = LogRecovery.Recover(new LogRegion(MemoryBlockDevice.Wrap((byte[])image.Clone(), "fuzz.log"), LogStart, LogBlocks));
        Assert.True(baseline.HeadLsn.Cycle >= 3, "the base log must have wrapped");
        var rng = new Random(seed * 31);
        int recovered = 0, refused = 0, n = Math.Max(100, Iterations / 2);
        var kinds = new int[6];
        for (int it = 0; it < n; it++)
        {
            var img = (byte[])image.Clone();
            int kind = rng.Next(6);
            kinds[kind]++;
            uint blocks = LogBlocks;
            int forged = -1;
            string what = Mutate(img, kind, rng, ref blocks, ref forged);
            var region = new LogRegion(MemoryBlockDevice.Wrap(img, "fuzz.log"), LogStart, blocks);
            var got = new List<RecoveredTransaction>();
            try
            {
                LogRecovery.Recover(region, got.Add);
                recovered++;
            }
            catch (CorruptionException e)
            {
                refused++;
                Assert.StartsWith("fuzz.log: ", e.Message);
                Assert.DoesNotContain('\n', e.Message);
                Assert.Empty(got);
                continue;
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"iteration {it} ({what}): recovery threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
            // A forged record has a matching CRC, so what it holds may be delivered as it now reads; every transaction
            // with no op in it (before or after the forgery) must still be delivered exactly as written.
            var forgedTids = forged < 0 ? [] : TidsAt(image, forged).Concat(TidsAt(img, forged)).ToHashSet();
            foreach (var t in got)
            {
                if (forgedTids.Contains(t.TransactionId)) continue;
                Assert.True(written.TryGetValue(t.TransactionId, out var regions), $"iteration {it} ({what}): unknown transaction {t.TransactionId:x}");
                Assert.True(regions!.Length == t.Regions.Count, $"iteration {it} ({what}): region count differs");
                for (int i = 0; i < regions.Length; i++)
                    Assert.True(t.Regions[i].Span.SequenceEqual(regions[i]), $"iteration {it} ({what}): delivered damaged data");
            }
        }
        output.WriteLine($"seed {seed}: {n} damaged logs, {recovered} recovered, {refused} refused; kinds {string.Join(",", kinds)}");
        Assert.True(refused > 0, "no damage was ever detected");
        Assert.True(recovered > 0, "no damaged log was ever recovered");
    }

    /// <summary>Transaction ids of the ops of the record whose header is at <paramref name="block"/>, if it reads as a sound record.</summary>
    private static IEnumerable<uint> TidsAt(byte[] image, int block)
    {
        var reader = new LogReader(new LogRegion(MemoryBlockDevice.Wrap((byte[])image.Clone(), "fuzz.log"), LogStart, LogBlocks));
        uint cycle = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan((int)(LogStart + block) * 512 + 4));
        return reader.TryReadRecord(reader.Position(new Lsn(cycle, (uint)block)), out var rec, out _)
            ? rec!.Ops.Select(o => o.Header.TransactionId).ToArray()
            : [];
    }

    private static string Mutate(byte[] img, int kind, Random rng, ref uint blocks, ref int forged)
    {
        int regionBytes = (int)LogBlocks * 512;
        int baseOff = (int)LogStart * 512;
        switch (kind)
        {
            case 0:
            {
                int flips = rng.Next(1, 9);
                for (int i = 0; i < flips; i++) img[baseOff + rng.Next(regionBytes)] ^= (byte)(1 << rng.Next(8));
                return $"{flips} bit flips";
            }
            case 1:
            {
                int b = rng.Next((int)LogBlocks);
                var span = img.AsSpan(baseOff + b * 512, 512);
                switch (rng.Next(3))
                {
                    case 0: span.Clear(); return $"block {b} zeroed";
                    case 1: rng.NextBytes(span); return $"block {b} random";
                    default:
                        int src = rng.Next((int)LogBlocks);
                        img.AsSpan(baseOff + src * 512, 512).CopyTo(span);
                        return $"block {src} copied over block {b}";
                }
            }
            case 2:
            {
                int from = rng.Next((int)LogBlocks);
                img.AsSpan(baseOff + from * 512, regionBytes - from * 512).Clear();
                return $"zeroed from block {from} to the end";
            }
            case 3:
            {
                blocks = (uint)rng.Next((int)LogFormat.MinLogBlocks, (int)LogBlocks);
                return $"log read as {blocks} blocks";
            }
            case 4:
            {
                // Change one header field of a record and give it a correct CRC again.
                int b = FindHeader(img, rng, baseOff);
                if (b < 0) return "no header found";
                var rec = img.AsSpan(baseOff + b * 512);
                int field = rng.Next(12) * 4;
                BinaryPrimitives.WriteUInt32LittleEndian(rec[field..], (uint)rng.Next() ^ BinaryPrimitives.ReadUInt32LittleEndian(rec[field..]) & (rng.Next(2) == 0 ? 0xFFu : 0xFFFFFFFFu));
                Reseal(rec, b);
                forged = b;
                return $"header field at {field} of block {b} changed, CRC forged";
            }
            default:
            {
                // Change bytes of a record's payload (op headers and data) and give it a correct CRC again.
                int b = FindHeader(img, rng, baseOff);
                if (b < 0) return "no header found";
                var rec = img.AsSpan(baseOff + b * 512);
                uint len = BinaryPrimitives.ReadUInt32LittleEndian(rec[12..]);
                int payloadBlocks = LogFormat.PayloadBlocksFor(Math.Min(len, (uint)LogFormat.MaxPayloadBytes));
                if (payloadBlocks == 0 || b + 1 + payloadBlocks > LogBlocks) return "empty record";
                for (int i = 0; i < rng.Next(1, 4); i++)
                {
                    int at = 512 + rng.Next(payloadBlocks * 512);
                    if (at % 512 < 4) continue;   // keep the cycle stamps
                    rec[at] = (byte)rng.Next(256);
                }
                Reseal(rec, b);
                forged = b;
                return $"payload of the record at block {b} changed, CRC forged";
            }
        }
    }

    private static int FindHeader(byte[] img, Random rng, int baseOff)
    {
        for (int tries = 0; tries < 1000; tries++)
        {
            int b = rng.Next((int)LogBlocks);
            if (BinaryPrimitives.ReadUInt32LittleEndian(img.AsSpan(baseOff + b * 512)) == LogFormat.RecordMagic) return b;
        }
        return -1;
    }

    private static void Reseal(Span<byte> rec, int block)
    {
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(rec[12..]);
        int payloadBlocks = LogFormat.PayloadBlocksFor(Math.Min(len, (uint)LogFormat.MaxPayloadBytes));
        int blocks = (int)Math.Min(1 + payloadBlocks, LogBlocks - block);
        uint crc = RecordCodec.ComputeCrc(rec[..(blocks * 512)]);
        BinaryPrimitives.WriteUInt32LittleEndian(rec[RecordHeader.CrcOffset..], crc);
    }
}
