using Journal.Format;
using Journal.Log;
using Journal.Recovery;
using Journal.Storage;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Log;

public class FileLogTests
{
    [Fact]
    public async Task Log_on_a_file_recovers_forced_transactions_after_reopen()
    {
        string path = Path.Combine(Path.GetTempPath(), $"journal-tests-log-{Guid.NewGuid():N}.log");
        try
        {
            var tids = new List<uint>();
            using (var dev = FileBlockDevice.Create(path, 4096))
            {
                var region = LogRegion.WholeDevice(dev);
                LogWriter.Format(region);
                await using var w = LogWriter.Open(region);
                for (int i = 0; i < 50; i++)
                {
                    uint tid = w.AllocateTransactionId();
                    var lsn = await w.WriteTransactionAsync(tid, [Payload(20, i, 64 + i * 100)]).Within();
                    await w.ForceAsync(lsn).Within();
                    tids.Add(tid);
                }
            }
            using (var dev = FileBlockDevice.Open(path))
            {
                var got = RecoverAll(LogRegion.WholeDevice(dev), out var r);
                Assert.Equal(tids, got.Select(t => t.TransactionId));
                Assert.Equal(Payload(20, 49, 64 + 4900), got[^1].Regions[0].ToArray());
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
