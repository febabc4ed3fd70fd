using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Journal.Storage;
using Journal.Testing;
using Snapshot;
using Snapshot.Storage;

namespace SnapCtl.Demo;

/// <summary>
/// Runs the demo store on crash-simulating in-memory devices (one per file of the store), every one behind the same
/// <see cref="CrashSwitch"/>, so a crash is one instant across the origin, the journal, the superblock and the COW
/// files. After the crash, <see cref="WriteCrashImages"/> puts into the store folder the files a power cut at that
/// instant could have left: every flushed write intact, each unflushed write kept, lost or torn, in any order.
/// </summary>
internal sealed partial class DemoDeviceProvider(CrashSwitch crashSwitch) : IDeviceProvider
{
    private readonly ConcurrentDictionary<string, CrashSimBlockDevice> _devices = new(StringComparer.Ordinal);

    private static string Key(string path) => Path.GetFullPath(path);

    public BlockDevice Create(string path, long sectors)
    {
        var device = new CrashSimBlockDevice(sectors, Key(path));
        if (!_devices.TryAdd(Key(path), device))
        {
            device.Dispose();
            throw new DeviceOpenException(Key(path), DeviceOpenError.AlreadyExists, "already exists; refusing to overwrite it");
        }
        return new SwitchedDevice(device, crashSwitch);
    }

    public BlockDevice Open(string path) =>
        _devices.TryGetValue(Key(path), out var device)
            ? new SwitchedDevice(device, crashSwitch)
            : throw new DeviceOpenException(Key(path), DeviceOpenError.Missing, "no such file");

    public bool Exists(string path) => _devices.ContainsKey(Key(path));

    public void Delete(string path)
    {
        if (_devices.TryRemove(Key(path), out var device)) device.Dispose();
    }

    public IEnumerable<string> List(string folder, string suffix)
    {
        string f = Key(folder);
        return _devices.Keys.Where(k => Path.GetDirectoryName(k) == f && k.EndsWith(suffix, StringComparison.Ordinal)).ToList();
    }

    public void EnsureFolder(string folder) => Directory.CreateDirectory(folder);

    public IDisposable Lock(string folder) => new NoLock();

    public IDisposable LockShared(string folder) => new NoLock();

    public string? WhyNotWritable(string folder) => null;

    public bool IsEmptyOrMissing(string folder) => !List(folder, "").Any();

    public long? AvailableBytes(string folder) => null;

    public string BeginCreate(string folder) => folder;

    public void CompleteCreate(string staging, string folder) { }

    public void AbandonCreate(string staging)
    {
        foreach (var k in List(staging, "")) Delete(k);
    }

    /// <summary>Unflushed writes a crash kept whole, lost, and tore, over all devices.</summary>
    public sealed record CrashFates(int Devices, int Unflushed, int Kept, int Lost, int Torn, long BytesWritten);

    /// <summary>
    /// After <see cref="CrashSwitch.Crash"/>: writes each device's crash image (chosen by <paramref name="random"/>) to
    /// its file, replacing whatever is there, and returns what happened to the unflushed writes.
    /// </summary>
    public CrashFates WriteCrashImages(Random random)
    {
        if (!crashSwitch.Crashed) throw new InvalidOperationException("crash images are taken after the crash");
        int kept = 0, lost = 0, torn = 0, unflushed = 0;
        long bytes = 0;
        foreach (var (path, device) in _devices.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            byte[] image = device.CrashImage(random, out string description);
            foreach (Match m in Fate().Matches(description))
            {
                unflushed++;
                switch (m.Groups[1].Value)
                {
                    case "kept": kept++; break;
                    case "lost": lost++; break;
                    default: torn++; break;
                }
            }
            bytes += device.Counters.BytesWritten;
            File.WriteAllBytes(path, image);
        }
        return new CrashFates(_devices.Count, unflushed, kept, lost, torn, bytes);
    }

    /// <summary>Bytes written so far to the device at <paramref name="path"/>.</summary>
    public long BytesWritten(string path) => _devices.TryGetValue(Key(path), out var d) ? d.Counters.BytesWritten : 0;

    [GeneratedRegex(@"\d+=(?:write@\d+\+\d+|extend->\d+) (kept|lost|torn)")]
    private static partial Regex Fate();

    private sealed class NoLock : IDisposable
    {
        public void Dispose() { }
    }
}
