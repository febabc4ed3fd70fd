using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// One state a crash could leave, from <see cref="WriteLog.CrashStates"/>: for each recorded device, its durable
/// content at the crash point plus a chosen fate (kept, lost, torn) for each of its writes in flight. Images are
/// built on demand; <see cref="Description"/> says what was chosen, for test failure messages.
/// </summary>
public sealed class CrashState
{
    /// <summary>What happened to one write or growth in flight.</summary>
    internal enum Fate : byte { Kept, Lost, Torn }

    private readonly WriteLog _log;
    private readonly int[] _durableBefore;
    private readonly WriteLogEntry[] _inFlight;
    private readonly Fate[] _fates;
    private readonly Dictionary<int, bool[]>? _torn;   // position in _inFlight -> sectors that landed
    private readonly int[]? _order;                    // positions in _inFlight, in the order they landed
    private string? _description;
    private readonly string _kind, _after;
    private readonly int _count;

    internal CrashState(WriteLog log, int point, int count, int variant, string kind, string after, int[] durableBefore,
        WriteLogEntry[] inFlight, Fate[] fates, Dictionary<int, bool[]>? torn, int[]? order)
    {
        _log = log;
        Point = point;
        _count = count;
        Variant = variant;
        _kind = kind;
        _after = after;
        _durableBefore = durableBefore;
        _inFlight = inFlight;
        _fates = fates;
        _torn = torn;
        _order = order;
    }

    /// <summary>The crash point: log entries 0..Point-1 had completed.</summary>
    public int Point { get; }

    /// <summary>The variant at this point: 0 keeps every issued write; 1 (if anything was in flight) loses them all.</summary>
    public int Variant { get; }

    /// <summary>True when every write in flight was kept whole, in order (the state <see cref="WriteLog.ImageAt(int, int)"/> gives).</summary>
    public bool KeepsEverything => _fates.All(f => f == Fate.Kept) && _order is null;

    /// <summary>Log positions of the writes and growths in flight at the point (all devices), increasing.</summary>
    public IReadOnlyList<int> InFlight => _inFlight.Select(e => e.Index).ToArray();

    /// <summary>Log positions of the in-flight writes and growths this state lost.</summary>
    public IReadOnlyList<int> Lost => Where(Fate.Lost);

    /// <summary>Log positions of the in-flight writes this state tore (see <see cref="TornSectorsKept"/>).</summary>
    public IReadOnlyList<int> Torn => Where(Fate.Torn);

    private int[] Where(Fate fate) => Enumerable.Range(0, _inFlight.Length).Where(i => _fates[i] == fate).Select(i => _inFlight[i].Index).ToArray();

    /// <summary>For a torn write (by log position): which of its sectors landed, by offset in the write.</summary>
    public IReadOnlyList<bool> TornSectorsKept(int entryIndex)
    {
        for (int i = 0; i < _inFlight.Length; i++)
            if (_inFlight[i].Index == entryIndex && _torn is not null && _torn.TryGetValue(i, out bool[]? mask))
                return mask;
        throw new ArgumentException($"entry #{entryIndex} is not torn in crash state {Point}/{Variant}", nameof(entryIndex));
    }

    /// <summary>The log position before which the device's writes are durable in this state.</summary>
    public int DurableBefore(int deviceId) => _durableBefore[CheckDevice(deviceId)];

    private int CheckDevice(int deviceId)
    {
        if ((uint)deviceId >= (uint)_durableBefore.Length)
            throw new ArgumentOutOfRangeException(nameof(deviceId), deviceId,
                $"crash state knows devices 0..{_durableBefore.Length - 1} (those registered when enumeration began)");
        return deviceId;
    }

    /// <summary>
    /// The device's image in this state: its durable content, then the in-flight writes this state kept (whole or
    /// the landed sectors of a torn one), in the order this state chose; growths kept or lost, sectors past the
    /// surviving size cut off. A new array each call.
    /// </summary>
    public byte[] Image(int deviceId)
    {
        byte[]? image = null;
        Image(deviceId, ref image);
        return image;
    }

    /// <summary>
    /// <see cref="Image(int)"/> into a caller-owned buffer, reused when its length matches and replaced otherwise
    /// (pair with <see cref="MemoryBlockDevice.Wrap"/> to mount thousands of states without allocating each one).
    /// </summary>
    public void Image(int deviceId, [System.Diagnostics.CodeAnalysis.NotNull] ref byte[]? buffer)
    {
        CheckDevice(deviceId);
        _log.ImageAt(deviceId, _durableBefore[deviceId], ref buffer);
        byte[] image = buffer;

        IEnumerable<int> order = _order ?? Enumerable.Range(0, _inFlight.Length);
        long size = image.Length;
        for (int i = 0; i < _inFlight.Length; i++)
        {
            WriteLogEntry e = _inFlight[i];
            if (e.DeviceId == deviceId && e.Kind == WriteLogEntryKind.Extend && _fates[i] == Fate.Kept)
                size = Math.Max(size, e.NewSectorCount << BlockDevice.SectorShift);
        }
        if (size > image.Length) Array.Resize(ref image, checked((int)size));

        foreach (int i in order)
        {
            WriteLogEntry e = _inFlight[i];
            if (e.DeviceId != deviceId || e.Kind != WriteLogEntryKind.Write || _fates[i] == Fate.Lost) continue;
            byte[] data = e.RawData!;
            bool[]? mask = _fates[i] == Fate.Torn ? _torn![i] : null;
            for (int s = 0; s < e.SectorCount; s++)
            {
                long at = (e.Sector + s) << BlockDevice.SectorShift;
                if ((mask is null || mask[s]) && at < image.Length)
                    data.AsSpan(s << BlockDevice.SectorShift, BlockDevice.SectorSize).CopyTo(image.AsSpan((int)at));
            }
        }
        buffer = image;
    }

    /// <summary><see cref="Image(int)"/> as a <see cref="MemoryBlockDevice"/> named after the device.</summary>
    public MemoryBlockDevice Device(int deviceId)
    {
        byte[] image = Image(deviceId);
        return MemoryBlockDevice.Wrap(image, _log.Devices[deviceId].Name);
    }

    /// <summary>What this state is: the point, the variant, and the fate of every in-flight write.</summary>
    public string Description => _description ??= Describe();

    private string Describe()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append($"crash state at point {Point} of {_count} ({_after}), variant {Variant}: {_kind}; {_inFlight.Length} in flight");
        const int Limit = 24;
        for (int i = 0; i < _inFlight.Length && i < Limit; i++)
        {
            WriteLogEntry e = _inFlight[i];
            sb.Append(i == 0 ? ": " : ", ").Append(e.ToString());
            sb.Append(_fates[i] switch
            {
                Fate.Kept => " kept",
                Fate.Lost => " lost",
                _ => $" torn (sectors kept: {string.Join("", _torn![i].Select(b => b ? '1' : '0'))})",
            });
        }
        if (_inFlight.Length > Limit) sb.Append($", ... {_inFlight.Length - Limit} more");
        if (_order is not null && _order.Length > 1)
            sb.Append("; landing order ").Append(string.Join(",", _order.Take(Limit).Select(i => "#" + _inFlight[i].Index)))
              .Append(_order.Length > Limit ? ",..." : "");
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => Description;
}
