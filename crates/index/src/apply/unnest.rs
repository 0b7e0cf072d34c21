//! The rows of a set-based statement, given as one array parameter per
//! column and read back with `unnest($1::text[], $2::int8[], ...) AS v(uri,
//! seq, ...)`. Each column is named once, with its values: the parameter
//! numbers, the array types and the column names of the `unnest` follow
//! from that one list, so adding a column is one line and no number has to
//! be kept in step with another by hand.

use std::borrow::Cow;

use tokio_postgres::types::ToSql;

/// A statement parameter, boxed so that arrays of different types can be
/// passed together.
pub(crate) type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// An array parameter and its SQL array type.
pub(crate) trait SqlArray: ToSql + Sync + Send {
    const TYPE: &'static str;
}

impl SqlArray for Vec<&str> {
    const TYPE: &'static str = "text[]";
}

impl SqlArray for Vec<Option<&str>> {
    const TYPE: &'static str = "text[]";
}

impl SqlArray for Vec<String> {
    const TYPE: &'static str = "text[]";
}

impl SqlArray for Vec<i64> {
    const TYPE: &'static str = "int8[]";
}

impl SqlArray for Vec<Option<i64>> {
    const TYPE: &'static str = "int8[]";
}

impl SqlArray for Vec<i32> {
    const TYPE: &'static str = "int4[]";
}

impl SqlArray for Vec<Option<i32>> {
    const TYPE: &'static str = "int4[]";
}

impl SqlArray for Vec<i16> {
    const TYPE: &'static str = "int2[]";
}

impl SqlArray for Vec<Option<i16>> {
    const TYPE: &'static str = "int2[]";
}

impl SqlArray for Vec<Option<Vec<u8>>> {
    const TYPE: &'static str = "bytea[]";
}

impl SqlArray for Vec<bool> {
    const TYPE: &'static str = "bool[]";
}

/// The columns of one statement's `unnest`, numbered in the order they are
/// added.
#[derive(Default)]
pub(crate) struct Unnest<'a> {
    names: Vec<Cow<'static, str>>,
    types: Vec<&'static str>,
    params: Vec<Param<'a>>,
}

impl<'a> Unnest<'a> {
    pub(crate) fn new() -> Self {
        Unnest::default()
    }

    /// Adds the column `name` with one value per row; it is the next
    /// parameter.
    pub(crate) fn column<T: SqlArray + 'a>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        values: T,
    ) -> &mut Self {
        self.names.push(name.into());
        self.types.push(T::TYPE);
        self.params.push(Box::new(values));
        self
    }

    /// `unnest($1::text[], ...) AS v(name, ...)`.
    pub(crate) fn rows(&self) -> String {
        format!("{} AS v({})", self.arrays(), self.names.join(", "))
    }

    /// `unnest($1::text[], ...)`, for statements that name the columns
    /// themselves.
    pub(crate) fn arrays(&self) -> String {
        let arrays: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(index, ty)| format!("${}::{ty}", index + 1))
            .collect();
        format!("unnest({})", arrays.join(", "))
    }

    /// The column names, in parameter order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| name.as_ref())
    }

    pub(crate) fn into_params(self) -> Vec<Param<'a>> {
        self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_and_typed_in_the_order_of_the_columns() {
        let mut rows = Unnest::new();
        rows.column("uri", vec!["at://a"])
            .column("cid", vec![None::<&str>])
            .column("seq", vec![Some(1_i64)])
            .column("live", vec![true])
            .column(format!("c{}", 0), vec![String::new()])
            .column("likes", vec![1_i64]);
        assert_eq!(
            rows.rows(),
            "unnest($1::text[], $2::text[], $3::int8[], $4::bool[], $5::text[], $6::int8[]) \
             AS v(uri, cid, seq, live, c0, likes)"
        );
        assert_eq!(
            rows.names().collect::<Vec<_>>(),
            ["uri", "cid", "seq", "live", "c0", "likes"]
        );
        assert_eq!(rows.into_params().len(), 6);
    }
}
