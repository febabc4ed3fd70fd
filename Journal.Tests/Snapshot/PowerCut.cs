using Journal.Testing;

namespace Journal.Tests.Snapshot;

/// <summary>Every device of the store is crash-simulating; <see cref="CrashImages"/> is what a power cut now leaves.</summary>
internal sealed class PowerCut
{
    public readonly TestDeviceProvider Devices = new();
    private readonly Dictionary<string, CrashSimBlockDevice> _crash = new();

    public PowerCut()
    {
        Devices.Wrap = (path, d) =>
        {
            lock (_crash)
            {
                if (_crash.TryGetValue(path, out var existing)) return existing;
                var c = new CrashSimBlockDevice(d.SectorCount, path);
                var buf = new byte[d.Length];
                d.Read(0, buf);
                c.Write(0, buf);
                c.Flush();
                _crash[path] = c;
                return c;
            }
        };
    }

    /// <summary>A provider holding what survives a power cut now: every flushed write, no unflushed one.</summary>
    public TestDeviceProvider CrashImages()
    {
        var after = new TestDeviceProvider();
        lock (_crash)
            foreach (var path in Devices.Paths)
            {
                byte[] image = _crash.TryGetValue(path, out var c) ? c.CrashImageLosingAll() : Devices.Backing(path).ToArray();
                after.Replace(path, MemoryBlockDevice.FromImage(image, path));
            }
        return after;
    }
}
