using System.Collections;
using System.Collections.Concurrent;
using System.Reflection;
using System.Reflection.Emit;
using System.Text;

namespace PgSpec.Protocol.Tests.Support;

/// <summary>Decodes a body into an owned message (null and the error when malformed).</summary>
public delegate object? SpanDecoder(ReadOnlySpan<byte> body, DecodeContext? context, out PgDecodeError error);

/// <summary>Checks a body.</summary>
public delegate bool SpanValidator(ReadOnlySpan<byte> body, DecodeContext? context, out PgDecodeError error);

/// <summary>Traces a body (checked first: a malformed one throws PgProtocolException).</summary>
public delegate void SpanTracer(ReadOnlySpan<byte> body, PgTraceWriter trace, char direction, DecodeContext? context);

/// <summary>Reads every accessor of a message's View into plain values (null when the body is malformed).</summary>
public delegate object?[]? SpanProjector(ReadOnlySpan<byte> body, DecodeContext? context);

internal delegate bool TryDecodeOf<T>(ReadOnlySpan<byte> body, DecodeContext? context, out T? message, out PgDecodeError error);

/// <summary>
/// The static API of one generated message type (TryDecode, TryValidate, Trace, View.TryRead,
/// View.ToMessage and the View's accessors) as delegates, found by reflection, so tests can
/// drive every message type the same way. Calls through spans and ref struct views are compiled
/// with DynamicMethod, since reflection cannot box them.
/// </summary>
public sealed class MessageCodec
{
    private static readonly ConcurrentDictionary<Type, MessageCodec> s_cache = new();

    private MessageCodec(Type type)
    {
        Type = type;
        MethodInfo tryDecode = type.GetMethod("TryDecode", BindingFlags.Public | BindingFlags.Static)!;
        TryDecode = (SpanDecoder)typeof(MessageCodec).GetMethod(nameof(WrapTryDecode), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(type).Invoke(null, [tryDecode])!;
        TryValidate = type.GetMethod("TryValidate", BindingFlags.Public | BindingFlags.Static)!.CreateDelegate<SpanValidator>();
        Trace = type.GetMethod("Trace", BindingFlags.Public | BindingFlags.Static)!.CreateDelegate<SpanTracer>();
        Type view = type.GetNestedType("View") ?? throw new InvalidOperationException($"{type.Name} has no View");
        ViewToMessage = CompileViewToMessage(type, view);
        ViewAccessors = CompileViewAccessors(type, view);
    }

    /// <summary>The message type.</summary>
    public Type Type { get; }

    /// <summary>T.TryDecode.</summary>
    public SpanDecoder TryDecode { get; }

    /// <summary>T.TryValidate.</summary>
    public SpanValidator TryValidate { get; }

    /// <summary>T.Trace.</summary>
    public SpanTracer Trace { get; }

    /// <summary>T.View.TryRead, then View.ToMessage.</summary>
    public SpanDecoder ViewToMessage { get; }

    /// <summary>T.View.TryRead, then every accessor of the View, in constructor order, as plain values (see <see cref="Plain"/>).</summary>
    public SpanProjector ViewAccessors { get; }

    /// <summary>The codec of a message type.</summary>
    public static MessageCodec For(Type type) => s_cache.GetOrAdd(type, t => new MessageCodec(t));

    /// <summary>
    /// The visible fields of an owned message (or group) as plain values, comparable with
    /// <see cref="ViewAccessors"/>: strings as their UTF-8 bytes, bytes as arrays, lists as lists,
    /// groups as arrays of their fields, integers and enums boxed.
    /// </summary>
    public static object?[] Plain(object message)
    {
        Type type = message.GetType();
        return [.. OwnedProperties(type).Select(p => PlainValue(p.GetValue(message)))];
    }

    /// <summary>Deep equality of plain values.</summary>
    public static bool PlainEqual(object? a, object? b)
    {
        if (a is null || b is null)
        {
            return a is null && b is null;
        }

        if (a is byte[] x && b is byte[] y)
        {
            return x.AsSpan().SequenceEqual(y);
        }

        if (a is IList l && b is IList r && a is not byte[] && b is not byte[])
        {
            if (l.Count != r.Count)
            {
                return false;
            }

            for (int i = 0; i < l.Count; i++)
            {
                if (!PlainEqual(l[i], r[i]))
                {
                    return false;
                }
            }

            return true;
        }

        return a.GetType() == b.GetType() && a.Equals(b);
    }

    /// <summary>Plain values as text, for failure messages.</summary>
    public static string Show(object? value) => value switch
    {
        null => "null",
        byte[] bytes => PgTraceWriter.FormatBytes(bytes),
        IList list => "[" + string.Join(", ", list.Cast<object?>().Select(Show)) + "]",
        _ => value.ToString() ?? "",
    };

    private static object? PlainValue(object? value) => value switch
    {
        null => null,
        string s => Encoding.UTF8.GetBytes(s),
        ReadOnlyMemory<byte> m => m.ToArray(),
        IEnumerable e => e.Cast<object?>().Select(PlainValue).ToList(),
        _ when value.GetType().IsPrimitive || value.GetType().IsEnum => value,
        _ => Plain(value),
    };

    /// <summary>The properties of the constructor's parameters, in order.</summary>
    private static PropertyInfo[] OwnedProperties(Type type)
        => [.. type.GetConstructors().Single().GetParameters()
            .Select(p => type.GetProperty(SpecGen.PropertyName(p.Name!)) ?? throw new InvalidOperationException($"{type.Name} has no property for {p.Name}"))];

    private static SpanDecoder WrapTryDecode<T>(MethodInfo method)
        where T : class
    {
        TryDecodeOf<T> tryDecode = method.CreateDelegate<TryDecodeOf<T>>();
        return (ReadOnlySpan<byte> body, DecodeContext? context, out PgDecodeError error) => tryDecode(body, context, out T? message, out error) ? message : null;
    }

    private static SpanDecoder CompileViewToMessage(Type type, Type view)
    {
        MethodInfo tryRead = view.GetMethod("TryRead", [typeof(ReadOnlySpan<byte>), typeof(DecodeContext), view.MakeByRefType(), typeof(PgDecodeError).MakeByRefType()])
            ?? throw new InvalidOperationException($"{type.Name}.View has no TryRead");
        MethodInfo toMessage = view.GetMethod("ToMessage") ?? throw new InvalidOperationException($"{type.Name}.View has no ToMessage");
        var method = new DynamicMethod(type.Name + "_ViewToMessage", typeof(object), [typeof(ReadOnlySpan<byte>), typeof(DecodeContext), typeof(PgDecodeError).MakeByRefType()], typeof(MessageCodec).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        LocalBuilder local = il.DeclareLocal(view);
        Label fail = il.DefineLabel();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Ldloca, local);
        il.Emit(OpCodes.Ldarg_2);
        il.Emit(OpCodes.Call, tryRead);
        il.Emit(OpCodes.Brfalse, fail);
        il.Emit(OpCodes.Ldloca, local);
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Call, toMessage);
        il.Emit(OpCodes.Ret);
        il.MarkLabel(fail);
        il.Emit(OpCodes.Ldnull);
        il.Emit(OpCodes.Ret);
        return method.CreateDelegate<SpanDecoder>();
    }

    private static SpanProjector CompileViewAccessors(Type type, Type view)
    {
        MethodInfo tryRead = view.GetMethod("TryRead", [typeof(ReadOnlySpan<byte>), typeof(DecodeContext), view.MakeByRefType(), typeof(PgDecodeError).MakeByRefType()])!;
        DynamicMethod project = CompileProjection(type, view);
        var method = new DynamicMethod(type.Name + "_ViewAccessors", typeof(object[]), [typeof(ReadOnlySpan<byte>), typeof(DecodeContext)], typeof(MessageCodec).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        LocalBuilder local = il.DeclareLocal(view);
        LocalBuilder error = il.DeclareLocal(typeof(PgDecodeError));
        Label fail = il.DefineLabel();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Ldloca, local);
        il.Emit(OpCodes.Ldloca, error);
        il.Emit(OpCodes.Call, tryRead);
        il.Emit(OpCodes.Brfalse, fail);
        il.Emit(OpCodes.Ldloc, local);
        il.Emit(OpCodes.Call, project);
        il.Emit(OpCodes.Ret);
        il.MarkLabel(fail);
        il.Emit(OpCodes.Ldnull);
        il.Emit(OpCodes.Ret);
        return method.CreateDelegate<SpanProjector>();
    }

    /// <summary>object[] (TView view): the view's accessors, in the order of the owned type's constructor.</summary>
    private static DynamicMethod CompileProjection(Type owned, Type view)
    {
        PropertyInfo[] properties = OwnedProperties(owned);
        var method = new DynamicMethod(owned.Name + "_Project", typeof(object[]), [view], typeof(MessageCodec).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        LocalBuilder result = il.DeclareLocal(typeof(object[]));
        il.Emit(OpCodes.Ldc_I4, properties.Length);
        il.Emit(OpCodes.Newarr, typeof(object));
        il.Emit(OpCodes.Stloc, result);
        for (int i = 0; i < properties.Length; i++)
        {
            PropertyInfo accessor = view.GetProperty(properties[i].Name)
                ?? throw new InvalidOperationException($"{owned.Name}.View has no accessor {properties[i].Name}");
            il.Emit(OpCodes.Ldloc, result);
            il.Emit(OpCodes.Ldc_I4, i);
            il.Emit(OpCodes.Ldarga_S, (byte)0);
            il.Emit(OpCodes.Call, accessor.GetMethod!);
            EmitToPlain(il, accessor.PropertyType, owned);
            il.Emit(OpCodes.Stelem_Ref);
        }

        il.Emit(OpCodes.Ldloc, result);
        il.Emit(OpCodes.Ret);
        return method;
    }

    /// <summary>Replaces the value of <paramref name="type"/> on the stack by its plain value.</summary>
    private static void EmitToPlain(ILGenerator il, Type type, Type owner)
    {
        if (type.IsPrimitive || type.IsEnum)
        {
            il.Emit(OpCodes.Box, type);
            return;
        }

        MethodInfo? converter = typeof(ViewValues).GetMethod(nameof(ViewValues.ToPlain), [type]);
        if (converter is not null)
        {
            il.Emit(OpCodes.Call, converter);
            return;
        }

        // A generated group list: Group.List, enumerating Group.View.
        Type? group = type.DeclaringType;
        if (type.IsByRefLike && type.Name == "List" && group is not null)
        {
            il.Emit(OpCodes.Call, CompileGroupList(group, type));
            return;
        }

        throw new InvalidOperationException($"{owner.Name}: no plain form for a view accessor of type {type}");
    }

    /// <summary>object (Group.List list): a List&lt;object&gt; of the items' projections.</summary>
    private static DynamicMethod CompileGroupList(Type group, Type list)
    {
        Type itemView = group.GetNestedType("View")!;
        MethodInfo getEnumerator = list.GetMethod("GetEnumerator")!;
        Type enumeratorType = getEnumerator.ReturnType;
        DynamicMethod project = CompileProjection(group, itemView);
        var method = new DynamicMethod(group.Name + "_ProjectList", typeof(object), [list], typeof(MessageCodec).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        LocalBuilder result = il.DeclareLocal(typeof(List<object?>));
        LocalBuilder enumerator = il.DeclareLocal(enumeratorType);
        Label loop = il.DefineLabel();
        Label end = il.DefineLabel();
        il.Emit(OpCodes.Newobj, typeof(List<object?>).GetConstructor(Type.EmptyTypes)!);
        il.Emit(OpCodes.Stloc, result);
        il.Emit(OpCodes.Ldarga_S, (byte)0);
        il.Emit(OpCodes.Call, getEnumerator);
        il.Emit(OpCodes.Stloc, enumerator);
        il.MarkLabel(loop);
        il.Emit(OpCodes.Ldloca, enumerator);
        il.Emit(OpCodes.Call, enumeratorType.GetMethod("MoveNext")!);
        il.Emit(OpCodes.Brfalse, end);
        il.Emit(OpCodes.Ldloc, result);
        il.Emit(OpCodes.Ldloca, enumerator);
        il.Emit(OpCodes.Call, enumeratorType.GetProperty("Current")!.GetMethod!);
        il.Emit(OpCodes.Call, project);
        il.Emit(OpCodes.Callvirt, typeof(List<object?>).GetMethod(nameof(List<object?>.Add))!);
        il.Emit(OpCodes.Br, loop);
        il.MarkLabel(end);

        // The list's Count must agree with what it enumerates.
        il.Emit(OpCodes.Ldloc, result);
        il.Emit(OpCodes.Ldarga_S, (byte)0);
        il.Emit(OpCodes.Call, list.GetProperty("Count")!.GetMethod!);
        il.Emit(OpCodes.Call, typeof(ViewValues).GetMethod(nameof(ViewValues.CheckCount))!);
        il.Emit(OpCodes.Ret);
        return method;
    }
}

/// <summary>Plain values of the runtime's view types (called from compiled projections).</summary>
public static class ViewValues
{
    /// <summary>Bytes.</summary>
    public static object ToPlain(ReadOnlySpan<byte> value) => value.ToArray();

    /// <summary>A value or null.</summary>
    public static object? ToPlain(PgValue value) => value.IsNull ? null : value.Bytes.ToArray();

    /// <summary>Values.</summary>
    public static object ToPlain(PgValueList values)
    {
        var list = new List<object?>();
        foreach (PgValue value in values)
        {
            list.Add(ToPlain(value));
        }

        return CheckCount(list, values.Count);
    }

    /// <summary>Strings, as bytes.</summary>
    public static object ToPlain(PgStringList values)
    {
        var list = new List<object?>();
        foreach (ReadOnlySpan<byte> value in values)
        {
            list.Add(value.ToArray());
        }

        return CheckCount(list, values.Count);
    }

    /// <summary>Int16 values.</summary>
    public static object ToPlain(PgInt16List values)
    {
        var list = new List<object?>();
        for (int i = 0; i < values.Count; i++)
        {
            list.Add(values[i]);
        }

        short[] copy = values.ToArray();
        if (!copy.SequenceEqual(list.Cast<short>()))
        {
            throw new InvalidOperationException("PgInt16List.ToArray disagrees with its indexer");
        }

        return list;
    }

    /// <summary>Int32 values.</summary>
    public static object ToPlain(PgInt32List values)
    {
        var list = new List<object?>();
        for (int i = 0; i < values.Count; i++)
        {
            list.Add(values[i]);
        }

        return list;
    }

    /// <summary>OIDs.</summary>
    public static object ToPlain(PgOidList values)
    {
        var list = new List<object?>();
        for (int i = 0; i < values.Count; i++)
        {
            list.Add(values[i]);
        }

        return list;
    }

    /// <summary>Throws when a list's Count disagrees with the number of items it enumerates.</summary>
    public static object CheckCount(List<object?> items, int count)
        => items.Count == count ? items : throw new InvalidOperationException($"a view list enumerates {items.Count} items but its Count is {count}");
}
