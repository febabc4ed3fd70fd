using System.Diagnostics.Metrics;

namespace Journal.Diagnostics;

/// <summary>
/// The live objects (journals, stores...) that one library's observable instruments report on, each under a name of
/// its own. A library keeps one static <see cref="Meter"/> and one <see cref="ObservedSet{T}"/>, creates its
/// instruments once through the factory methods here, and adds each object when it opens and removes it when it
/// closes: every collection then yields one measurement per live object, tagged <c>{TagName} = name</c>, read from
/// counters the object keeps anyway. Nothing is recorded on the objects' own paths, and a closed object is neither
/// reported nor kept alive.
/// </summary>
/// <remarks>
/// <para>Names are unique among the live objects: a name already in use gets <c>#2</c>, <c>#3</c>... appended, so two
/// objects in one process are always told apart while a reopened object keeps its name.</para>
/// <para>Locking: <c>_lock</c> serialises <see cref="Add"/> and <see cref="Remove"/>, which replace the entry array
/// (copy on write); collections read the array without the lock. The readers passed to the factory methods run on
/// the collecting thread (a <see cref="MeterListener"/>, an exporter, dotnet-counters) and must only read.</para>
/// </remarks>
public sealed class ObservedSet<T> where T : class
{
    private readonly object _lock = new();
    private Entry[] _entries = [];

    /// <summary>A set whose measurements carry the tag <paramref name="tagName"/>.</summary>
    public ObservedSet(string tagName) => TagName = tagName;

    /// <summary>The tag that names each object in its measurements.</summary>
    public string TagName { get; }

    /// <summary>Objects observed now.</summary>
    public int Count => Volatile.Read(ref _entries).Length;

    /// <summary>Starts reporting on <paramref name="source"/>; returns the name it is reported under.</summary>
    public string Add(T source, string name)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        lock (_lock)
        {
            string unique = name;
            for (int n = 2; Array.Exists(_entries, e => e.Name == unique); n++) unique = $"{name}#{n}";
            _entries = [.. _entries, new Entry(source, unique, new KeyValuePair<string, object?>(TagName, unique))];
            return unique;
        }
    }

    /// <summary>Stops reporting on <paramref name="source"/> (its name is free again). False if it was not observed.</summary>
    public bool Remove(T source)
    {
        lock (_lock)
        {
            int i = Array.FindIndex(_entries, e => ReferenceEquals(e.Source, source));
            if (i < 0) return false;
            _entries = [.. _entries[..i], .. _entries[(i + 1)..]];
            return true;
        }
    }

    /// <summary>An observable counter (a monotonic total) with one measurement per object; null readings are skipped.</summary>
    public ObservableCounter<long> CreateCounter(Meter meter, string name, string unit, string description, Func<T, long?> read) =>
        meter.CreateObservableCounter(name, () => Measure(read), unit, description);

    /// <summary>
    /// An observable counter with one measurement per object and value of <paramref name="attribute"/>: each series
    /// is a monotonic total of its own.
    /// </summary>
    public ObservableCounter<long> CreateCounter(Meter meter, string name, string unit, string description, string attribute,
        params (string Value, Func<T, long?> Read)[] series) =>
        meter.CreateObservableCounter(name, () => Measure(attribute, series), unit, description);

    /// <summary>An observable up-down counter (a current amount that goes up and down), one measurement per object.</summary>
    public ObservableUpDownCounter<long> CreateUpDownCounter(Meter meter, string name, string unit, string description, Func<T, long?> read) =>
        meter.CreateObservableUpDownCounter(name, () => Measure(read), unit, description);

    /// <summary>
    /// An observable up-down counter split by <paramref name="attribute"/>: one measurement per object and series
    /// (the parts of one whole, such as used and free).
    /// </summary>
    public ObservableUpDownCounter<long> CreateUpDownCounter(Meter meter, string name, string unit, string description, string attribute,
        params (string Value, Func<T, long?> Read)[] series) =>
        meter.CreateObservableUpDownCounter(name, () => Measure(attribute, series), unit, description);

    /// <summary>An observable gauge (a value that is not summed across objects, such as a peak), one measurement per object.</summary>
    public ObservableGauge<long> CreateGauge(Meter meter, string name, string unit, string description, Func<T, long?> read) =>
        meter.CreateObservableGauge(name, () => Measure(read), unit, description);

    private List<Measurement<long>> Measure(Func<T, long?> read)
    {
        var entries = Volatile.Read(ref _entries);
        var list = new List<Measurement<long>>(entries.Length);
        foreach (var e in entries)
            if (read(e.Source) is long v) list.Add(new Measurement<long>(v, e.Tag));
        return list;
    }

    private List<Measurement<long>> Measure(string attribute, (string Value, Func<T, long?> Read)[] series)
    {
        var entries = Volatile.Read(ref _entries);
        var list = new List<Measurement<long>>(entries.Length * series.Length);
        foreach (var e in entries)
            foreach (var (value, read) in series)
                if (read(e.Source) is long v) list.Add(new Measurement<long>(v, e.Tag, new KeyValuePair<string, object?>(attribute, value)));
        return list;
    }

    private sealed record Entry(T Source, string Name, KeyValuePair<string, object?> Tag);
}
